"""The public way to use a trained network: ``nasden.load(path)`` gives a :class:`Denoiser`.

    import nasden
    model = nasden.load("runs/quick/final.pt")        # a model file, or a run folder
    clean = model.denoise(noisy)                       # numpy array, PIL image or tensor; gray or colour
    nasden.denoise_file(model, "photo.png", "photo_denoised.png")
    print(model.describe())                            # FLOPs/pixel, parameters, candidates
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from nasden.common.errors import UsageError
from nasden.common.memory import check_fits
from nasden.core.activations import PixelBytes, pixel_bytes
from nasden.core.specs import is_dynamic
from nasden.data.color import ColorMode, denoise_in_color
from nasden.data.images import image_header, load_image, output_bits, save_image
from nasden.data.noise import NoiseConfig
from nasden.deploy import model_file
from nasden.deploy.export import export
from nasden.deploy.inference import Denoised, denoise, receptive_radius
from nasden.deploy.output_plan import plan_outputs
from nasden.deploy.scoring import evaluate_network

Route = Literal["image", "tile"]
TILES_AT_ONCE = 4  # nasden.deploy.inference.denoise's batch of tiles
Image_ = TypeVar("Image_", np.ndarray, Image.Image, Tensor)


class Denoiser(nn.Module):
    """A trained denoiser, static or dynamic: ``forward`` runs a batch ``[N, C, H, W]`` in [0, 1];
    :meth:`denoise` takes one image of any size (tiles, padding, routing, colour through a gray network)."""

    def __init__(self, loaded: model_file.ModelFile):
        super().__init__()
        self.network = loaded.network
        self.space, self.spec, self.trained_on, self.path = loaded.space, loaded.spec, loaded.trained_on, loaded.path
        self._radius: int | None = None
        self._pixel_bytes: PixelBytes | None = None

    @property
    def in_channels(self) -> int:
        """1 for a gray network (colour images go through it channel by channel), 3 for RGB."""
        return self.space.in_channels

    @property
    def size_multiple(self) -> int:
        """Image sides the network takes (U-Nets halve them); :meth:`denoise` pads to it."""
        return self.space.resolution_multiple

    @property
    def dynamic(self) -> bool:
        """Whether a gate routes each image (or tile) to one of several candidates."""
        return is_dynamic(self.network)

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    def describe(self) -> dict[str, Any]:
        """FLOPs/pixel, parameters and (dynamic) candidates, with the channels and the training noise."""
        return {**model_file.describe(self.network, self.space, self.spec), "in_channels": self.in_channels,
                "size_multiple": self.size_multiple, "trained_on": self.trained_on}

    def score(self, pairs: Sequence[tuple[str, Tensor, Tensor]], name: str) -> dict[str, Any]:
        """PSNR, SSIM, FLOPs/pixel and time on noisy/clean ``pairs`` (for a dynamic network: the routes taken)."""
        return evaluate_network(self.network, self.space, self.spec, pairs, name)

    def export(self, out: Path, fmt: str = "torchscript", overwrite: bool = False) -> dict[str, Any]:
        """Write the network to the folder ``out`` as TorchScript or ONNX with a manifest (:mod:`.export`)."""
        return export(self.network, self.space, self.spec, out, fmt, overwrite)

    def noise_warning(self, sigma: float) -> str | None:
        """A sentence when AWGN of ``sigma`` (0-255 scale) is not what the network was trained on, else None."""
        if self.trained_on.get("real_noise"):
            trained = f"real noise pairs from {self.trained_on['train']}"
        else:
            noise = NoiseConfig(**self.trained_on["noise"])
            if noise.kind != "gaussian":
                trained = f"{noise.kind} noise"
            else:
                low, high = noise.sigma_range
                if low <= sigma <= high:
                    return None
                trained = f"AWGN sigma {noise.levels or noise.sigma}"
        return (f"this model was trained on {trained}, not AWGN sigma {sigma:g}, and takes no noise-level input; "
                f"expect worse results")

    def check_tiles(self, tile: int, overlap: int) -> None:
        """Tiles that cover the image with a real overlap, in the network's size multiple and no smaller than
        its receptive field (measured once, only when tiles are asked for); a :class:`UsageError` otherwise."""
        if tile < 0 or overlap < 0:
            raise UsageError(f"--tile and --overlap: expected sizes ≥ 0, got {tile} and {overlap}")
        if tile == 0:
            return
        if tile < max(2 * overlap, 1):
            raise UsageError(f"--tile {tile}: expected 0 (whole image) or at least {max(2 * overlap, 1)} pixels "
                              f"(twice --overlap {overlap})")
        multiple = self.size_multiple
        if tile % multiple or overlap % multiple:
            raise UsageError(f"--tile {tile} and --overlap {overlap}: this network needs multiples of {multiple}")
        if self._radius is None:
            self._radius = receptive_radius(self.network, self.in_channels, multiple)
        field = 2 * self._radius + 1
        if tile < field:
            raise UsageError(f"--tile {tile}: smaller than the network's receptive field ({field} pixels); use "
                              f"--tile {-(-field // multiple) * multiple} or more, or 0 for the whole image")

    @torch.no_grad()
    def run(self, image: Tensor, tile: int = 512, overlap: int = 32, route: Route = "image",
            color: ColorMode = "channels", quiet: bool = True) -> Denoised:
        """Denoise a ``[C, H, W]`` tensor in [0, 1]; the result says the FLOPs spent and (dynamic) the route
        each tile took. A colour image through a gray network goes as ``color`` says (:mod:`nasden.data.color`);
        a gray image through an RGB network is replicated to RGB."""
        self.check_tiles(tile, overlap)
        if route not in ("image", "tile"):
            raise UsageError(f"route: expected 'image' or 'tile', got {route!r}")
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise UsageError(f"expected a [C, H, W] image with 1 or 3 channels, got shape {tuple(image.shape)}")
        if image.shape[0] == 1 and self.in_channels == 3:
            image = image.expand(3, -1, -1)
        self.check_memory(tuple(image.shape[-2:]), tile)

        def one(x: Tensor) -> Denoised:
            return denoise(self.network, x, self.size_multiple, tile or None, overlap, route, quiet=quiet)

        if image.shape[0] == self.in_channels:
            return one(image)
        passes: list[Denoised] = []

        def gray(x: Tensor) -> Tensor:
            passes.append(one(x))
            return passes[-1].image

        result = denoise_in_color(gray, image, color)
        flops = None if passes[-1].flops_per_pixel is None else sum(p.flops_per_pixel or 0.0 for p in passes)
        return dataclasses.replace(passes[-1], image=result, flops_per_pixel=flops)

    def check_memory(self, size: tuple[int, ...], tile: int) -> None:
        """Refuse, before any work, an image of ``size`` (height, width) whose pass, whole or in ``tile``-pixel
        tiles, needs more memory than there is."""
        if self._pixel_bytes is None:
            self._pixel_bytes = pixel_bytes(self.network, self.in_channels, self.size_multiple)
        height, width = size
        whole = tile == 0 or (height <= tile and width <= tile)
        pixels = height * width if whole else TILES_AT_ONCE * tile * tile
        what = f"denoising a {width}×{height} image " + ("whole" if whole else f"in {tile}-pixel tiles")
        check_fits(self._pixel_bytes.inference(pixels), what, "use a smaller --tile",
                   next(self.network.parameters()).device)

    def denoise(self, image: Image_, tile: int = 512, overlap: int = 32, route: Route = "image",
                color: ColorMode = "channels") -> Image_:
        """Denoise one image and return it as it came: a numpy array (``[H, W]`` or ``[H, W, 3]``; uint8,
        uint16 or float in [0, 1]), a PIL image (``L``, ``I;16`` or ``RGB``) or a tensor (``[H, W]`` or
        ``[C, H, W]`` in [0, 1])."""
        tensor, restore = _as_tensor(image)
        return restore(self.run(tensor.to(torch.float32), tile, overlap, route, color).image.clamp(0, 1).cpu())


def _as_tensor(image: Any) -> tuple[Tensor, Any]:
    """``image`` as a ``[C, H, W]`` float tensor in [0, 1], and the function that turns a result back into
    the type, layout and depth ``image`` came in."""
    if isinstance(image, Image.Image):
        mode = image.mode
        if mode not in ("L", "RGB", "I;16"):
            raise UsageError(f"a PIL image of mode {mode}: expected L, RGB or I;16 (convert it first)")
        tensor, back = _as_tensor(np.asarray(image))  # I;16 reads as uint16 and writes back as I;16
        return tensor, lambda out: Image.fromarray(back(out))
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise UsageError(f"expected an [H, W] or [H, W, 3] array, got shape {image.shape}")
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype)
        if scale is None and not np.issubdtype(image.dtype, np.floating):
            raise UsageError(f"an array of {image.dtype}: expected uint8, uint16 or floats in [0, 1]")
        data = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)) / (scale or 1.0)
        tensor = data[None] if image.ndim == 2 else data.permute(2, 0, 1)

        def back_array(out: Tensor) -> np.ndarray:
            array = (out[0] if image.ndim == 2 else out.permute(1, 2, 0)).numpy()
            if scale is None:
                return array.astype(image.dtype)
            return np.round(array * scale).astype(image.dtype)

        return tensor, back_array
    if isinstance(image, Tensor):
        if image.ndim not in (2, 3):
            raise UsageError(f"expected an [H, W] or [C, H, W] tensor, got shape {tuple(image.shape)}")
        return (image[None] if image.ndim == 2 else image), lambda out: (
            out[0] if image.ndim == 2 else out).to(image.device, image.dtype)
    raise UsageError(f"cannot denoise a {type(image).__name__}: expected a numpy array, PIL image or tensor")


def load(path: str | Path, device: torch.device | str = "cpu") -> Denoiser:
    """The denoiser in the model file (or run folder) at ``path``, in eval mode on ``device``."""
    return Denoiser(model_file.load(Path(path), device)).eval()


def denoise_file(model: Denoiser | str | Path, in_path: str | Path, out_path: str | Path, overwrite: bool = False,
                 **options: Any) -> Path:
    """Denoise the image file ``in_path`` into ``out_path`` (an existing file is replaced only with
    ``overwrite``; a 16-bit gray file stays 16-bit as PNG or TIFF); ``options`` as for :meth:`Denoiser.run`.
    Returns the path written."""
    denoiser = model if isinstance(model, Denoiser) else load(model)
    job, = plan_outputs(Path(in_path), Path(out_path), overwrite=overwrite)
    (width, height), source_bits = image_header(job.source)
    denoiser.check_memory((height, width), options.get("tile", 512))
    noisy = load_image(job.source, None if denoiser.in_channels == 1 else denoiser.in_channels)
    image = denoiser.run(noisy, **options).image
    return save_image(image, job.output, output_bits(source_bits, image.shape[0], job.output))
