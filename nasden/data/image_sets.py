"""Training patches and evaluation images: builtin photographs, image folders, noisy/clean pairs.

``data: builtin`` uses the natural photographs scikit-image ships in its wheel, so a fresh machine
needs no download; a dataset name (``train400``, ``bsd68``, ... :mod:`nasden.data.datasets`) is found in
``$NASDEN_DATA`` or the user cache, or downloaded there. A folder with ``noisy/`` and ``clean/``
sub-folders is a real-noise pair set (files paired by name). Training batches are a pure function of
``(seed, step)``: a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from nasden.common.errors import NasdenError
from nasden.data import datasets
from nasden.data.datasets import DATA_ENV
from nasden.data.images import ImageError, ImageWarning, list_images, load_image
from nasden.data.noise import NoiseConfig, add_noise

BUILTIN_TRAIN = ("astronaut", "brick", "chelsea", "coffee", "grass", "gravel", "hubble_deep_field", "moon",
                 "motorcycle_left")
BUILTIN_VAL = ("camera", "coins", "rocket")


class DataError(NasdenError, ValueError):
    """Missing or unusable data; the message names the folder or file."""


@dataclass
class DataConfig:
    """Where images come from and how training batches are made.

    ``train`` / ``val``: ``builtin``, a dataset name (``train400``, ``set12``, ``bsd68``, ``polyu``, ...:
    :mod:`nasden.data.datasets`), an image folder, or a folder with ``noisy/`` and ``clean/`` (real noise;
    ``noise`` is then unused). Other bare names are looked up in ``$NASDEN_DATA``. ``val_crop``
    centre-crops validation images to at most that size. ``pairs``: when ``train`` is a pair set, train on
    its real noisy images (``real``) or on its clean ones with ``noise`` added (``clean``: compares noise
    models on the same images); validation always uses the real pairs.
    """

    train: str = "builtin"
    val: str = "builtin"
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    pairs: Literal["real", "clean"] = "real"
    patch: int = 48
    batch: int = 16
    val_images: int | None = None
    val_crop: int | None = None

    def __post_init__(self) -> None:
        for name, most in (("patch", 4096), ("batch", 65536), ("val_images", 100_000), ("val_crop", 65536)):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= most:
                raise ValueError(f"{name}: expected an integer in 1..{most}, got {value!r}")


def builtin_folder() -> Path:
    import skimage.data
    return Path(skimage.data.__file__).parent


def check_folder(name: str | Path) -> None:
    """Raise ``DataError`` unless :func:`resolve_folder` can give ``name`` (a dataset name, or ``name:split``,
    always can: it is found or downloaded when the run starts)."""
    try:
        dataset, _ = datasets.split_source(str(name))
    except datasets.DatasetError as err:
        raise DataError(str(err)) from None
    if dataset not in datasets.names():
        resolve_folder(name)


def resolve_folder(name: str | Path) -> Path:
    """An existing folder: the path itself, a named dataset (found, or downloaded), or ``$NASDEN_DATA/<name>``."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise DataError(f"data folder {str(name)!r} is a file, not a folder of images")
    if str(name) in datasets.names():
        return datasets.locate(str(name))
    root = os.environ.get(DATA_ENV)
    if root and (Path(root) / str(name)).is_dir():
        return Path(root) / str(name)
    hint = f" (nor under ${DATA_ENV}={root})" if root else f" (set ${DATA_ENV} to look up bare names)"
    raise DataError(f"data folder {str(name)!r} does not exist{hint}")


@dataclass
class ImageSet:
    """Clean images, and the matching noisy ones for real-noise pairs."""

    names: list[str]
    clean: list[Tensor]
    noisy: list[Tensor] | None = None


def load_set(source: str, channels: int, split: str = "train") -> ImageSet:
    """Load ``builtin`` (its ``split``), a dataset name (or ``name:split``), an image folder or a noisy/clean
    pair folder."""
    if source == "builtin":
        folder = builtin_folder()
        wanted = BUILTIN_TRAIN if split == "train" else BUILTIN_VAL
        files = {p.stem: p for p in folder.iterdir() if p.stem in wanted}
        with warnings.catch_warnings():  # gray/RGB conversion of the builtin photographs is expected
            warnings.simplefilter("ignore", ImageWarning)
            return ImageSet(list(wanted), [load_image(files[name], channels) for name in wanted])
    source, split = datasets.split_source(source)
    wanted = set(datasets.manifest(source).splits[split]) if split else None
    folder = resolve_folder(source)
    if _is_pair_folder(folder):
        return _load_pairs(folder, channels, wanted)
    paths = [p for p in list_images(folder) if wanted is None or p.name in wanted]
    if not paths:
        raise DataError(f"{folder}: no image files (png, jpg, tif, bmp)")
    return ImageSet([p.name for p in paths], [load_image(p, channels) for p in paths])


def is_pair_set(source: str) -> bool:
    """Whether ``source`` (a folder, dataset name or ``name:split``) holds real noisy/clean pairs."""
    if source == "builtin":
        return False
    return _is_pair_folder(resolve_folder(datasets.split_source(source)[0]))


def _is_pair_folder(folder: Path) -> bool:
    return (folder / "noisy").is_dir() and (folder / "clean").is_dir()


def _load_pairs(folder: Path, channels: int, wanted: set[str] | None = None) -> ImageSet:
    """The noisy/clean pairs of ``folder`` (only the ``wanted`` names, if given)."""
    clean = {p.name: p for p in list_images(folder / "clean") if wanted is None or p.name in wanted}
    noisy = {p.name: p for p in list_images(folder / "noisy") if wanted is None or p.name in wanted}
    names = sorted(clean.keys() & noisy.keys())
    for name in sorted(clean.keys() ^ noisy.keys()):
        warnings.warn(f"{folder}: {name} has no partner in {'noisy' if name in clean else 'clean'}/; skipped",
                      ImageWarning, stacklevel=2)
    if not names:
        raise DataError(f"{folder}: no file name appears in both noisy/ and clean/")
    pairs = ImageSet(names, [], [])
    for name in names:
        c, n = load_image(clean[name], channels), load_image(noisy[name], channels)
        if c.shape != n.shape:
            raise ImageError(f"{noisy[name]}: size {tuple(n.shape[1:])} differs from its clean image "
                             f"{tuple(c.shape[1:])}")
        pairs.clean.append(c)
        assert pairs.noisy is not None
        pairs.noisy.append(n)
    return pairs


def _augment(x: Tensor, mode: int) -> Tensor:
    """One of the 8 flips/rotations of the dihedral group."""
    x = torch.rot90(x, mode % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if mode >= 4 else x


def _generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2 ** 63))


class PatchSampler:
    """Random augmented patches with synthetic (or real) noise; ``batch(step)`` is deterministic."""

    def __init__(self, images: ImageSet, noise: NoiseConfig, patch: int, batch: int, seed: int):
        keep = [i for i, img in enumerate(images.clean) if min(img.shape[1:]) >= patch]
        if not keep:
            raise DataError(f"no training image is at least {patch}×{patch} pixels")
        for i in sorted(set(range(len(images.clean))) - set(keep)):
            warnings.warn(f"{images.names[i]}: {tuple(images.clean[i].shape[1:])} is smaller than the {patch}-pixel "
                          f"patch; not used for training", ImageWarning, stacklevel=2)
        self.clean = [images.clean[i] for i in keep]
        self.noisy = [images.noisy[i] for i in keep] if images.noisy is not None else None
        self.noise, self.patch, self.batch_size, self.seed = noise, patch, batch, seed
        self.smallest_side = min(min(img.shape[1:]) for img in self.clean)

    def with_noise(self, noise: NoiseConfig) -> PatchSampler:
        """The same patches with ``noise`` instead (a stage that trains at another noise level)."""
        other = copy.copy(self)
        other.noise = noise
        return other

    def halves(self) -> tuple[PatchSampler, PatchSampler]:
        """Two samplers over disjoint halves of the training images (even and odd positions), as
        differentiable search trains weights on one and architecture parameters on the other."""
        if len(self.clean) < 2:
            raise DataError("splitting the training images in two halves needs at least two images")
        halves = []
        for start in (0, 1):
            half = copy.copy(self)
            half.clean = self.clean[start::2]
            half.noisy = None if self.noisy is None else self.noisy[start::2]
            half.smallest_side = min(min(img.shape[1:]) for img in half.clean)
            halves.append(half)
        return halves[0], halves[1]

    def batch(self, step: int, batch: int | None = None, stream: int = 0, patch: int | None = None,
              shard: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """(noisy, clean) patches ``[B, C, patch, patch]`` for training step ``step``.

        Stages pass their own ``stream`` so that two stages do not see the same batches, and may ask
        for another ``batch`` size or ``patch`` size than the data section's. ``shard=(i, k)``: share
        ``i`` of ``k`` processes, i.e. rows ``i·B .. (i+1)·B`` of the batch of ``k·B`` patches one process
        would draw, so k processes together see exactly that batch.
        """
        if shard is not None:
            index, count = shard
            size = batch or self.batch_size
            noisy, clean = self.batch(step, size * count, stream, patch)
            rows = slice(index * size, (index + 1) * size)
            return noisy[rows].contiguous(), clean[rows].contiguous()
        g = _generator(self.seed + 7919 * stream, step)
        size = batch or self.batch_size
        patch = patch or self.patch
        if patch > self.smallest_side:
            raise DataError(f"a {patch}-pixel patch does not fit the smallest training image "
                            f"({self.smallest_side} pixels)")
        index = torch.randint(len(self.clean), (size,), generator=g).tolist()
        modes = torch.randint(8, (size,), generator=g).tolist()
        clean, noisy = [], []
        for i, mode in zip(index, modes):
            h, w = self.clean[i].shape[1:]
            top = int(torch.randint(h - patch + 1, (1,), generator=g))
            left = int(torch.randint(w - patch + 1, (1,), generator=g))
            window = (..., slice(top, top + patch), slice(left, left + patch))
            clean.append(_augment(self.clean[i][window], mode))
            if self.noisy is not None:
                noisy.append(_augment(self.noisy[i][window], mode))
        clean_batch = torch.stack(clean)
        if self.noisy is not None:
            return torch.stack(noisy), clean_batch
        return add_noise(clean_batch, self.noise, g), clean_batch


def _centre_crop(x: Tensor, size: int | None) -> Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return x[..., top: top + size, left: left + size]


def evaluation_pairs(images: ImageSet, noise: NoiseConfig, seed: int, limit: int | None = None,
                     crop: int | None = None) -> list[tuple[str, Tensor, Tensor]]:
    """(name, noisy, clean) per image, with noise fixed by ``seed`` and the image's index."""
    pairs = []
    count = len(images.clean) if limit is None else min(limit, len(images.clean))
    for i in range(count):
        clean = _centre_crop(images.clean[i], crop)
        if images.noisy is not None:
            noisy = _centre_crop(images.noisy[i], crop)
        else:
            noisy = add_noise(clean[None], noise, _generator(seed, 10_000_000 + i))[0]
        pairs.append((images.names[i], noisy, clean))
    return pairs


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad ``[N, C, H, W]`` so H and W are multiples of ``multiple``; returns the original size."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class RunData:
    """The data a run's stages share: the training sampler and fixed validation pairs (loaded lazily)."""

    def __init__(self, config: DataConfig, channels: int, seed: int):
        self.config, self.channels, self.seed = config, channels, seed
        self._sampler: PatchSampler | None = None
        self._val: list[tuple[str, Tensor, Tensor]] | None = None

    @property
    def sampler(self) -> PatchSampler:
        if self._sampler is None:
            images = load_set(self.config.train, self.channels, "train")
            if self.config.pairs == "clean":
                images = ImageSet(images.names, images.clean)
            self._sampler = PatchSampler(images, self.config.noise, self.config.patch, self.config.batch, self.seed)
        return self._sampler

    @property
    def val(self) -> list[tuple[str, Tensor, Tensor]]:
        if self._val is None:
            self._val = self.test_set(self.config.val)
        return self._val

    def val_batch(self, size: int, count: int | None = None) -> tuple[Tensor, Tensor]:
        """The first ``count`` validation pairs, centre-cropped to ``size``², stacked into one batch."""
        pairs = self.val[:count] if count else self.val
        small = [name for name, _, clean in pairs if min(clean.shape[1:]) < size]
        if small:
            raise DataError(f"validation images {small} are smaller than the {size}-pixel evaluation crop")
        return (torch.stack([_centre_crop(noisy, size) for _, noisy, _ in pairs]),
                torch.stack([_centre_crop(clean, size) for _, _, clean in pairs]))

    def calibration_batches(self, count: int) -> list[Tensor]:
        """Noisy training batches for BatchNorm recalibration (a stream of their own)."""
        return [self.sampler.batch(i, stream=-1)[0] for i in range(count)]

    def test_set(self, source: str, sigma: float | None = None,
                 validation: bool = True) -> list[tuple[str, Tensor, Tensor]]:
        """Fixed noisy/clean pairs of ``source`` (``builtin`` means its validation split); as validation,
        the first ``val_images`` centre-cropped to ``val_crop``, else every image whole."""
        noise = self.config.noise if sigma is None else NoiseConfig(kind=self.config.noise.kind, sigma=sigma,
                                                                    peak=self.config.noise.peak)
        images = load_set(source, self.channels, "val")
        if not validation:
            return evaluation_pairs(images, noise, self.seed)
        return evaluation_pairs(images, noise, self.seed, self.config.val_images, self.config.val_crop)
