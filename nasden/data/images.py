"""Reading and writing image files: odd files are converted with a warning or rejected in one line."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nasden.common.atomic import atomic_write
from nasden.common.errors import NasdenError
from nasden.common.memory import check_fits

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DECODED_BYTES = 24  # per pixel and channel while an image is read: Pillow's pixels, a float64 array, a tensor


class ImageError(NasdenError, ValueError):
    """An image that cannot be used; the message names the file."""


class ImageWarning(UserWarning):
    """An image that was converted to fit (bit depth, alpha, palette, colour)."""


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; extensions match regardless of case."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder of images")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())


def _to_array(image: Image.Image, path: Path) -> np.ndarray:
    """Pixel values in [0, 1], shape [H, W] or [H, W, 3]."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if data.max() > 255 or mode.startswith("I;16") else 255.0
        warnings.warn(f"{path}: {mode} image ({'16' if scale > 255 else '8'}-bit values) scaled to [0, 1]",
                      ImageWarning, stacklevel=3)
        return np.clip(data / scale, 0, 1)
    if mode == "F":
        return np.clip(np.asarray(image, dtype=np.float64), 0, 1)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        warnings.warn(f"{path}: alpha channel dropped", ImageWarning, stacklevel=3)
        image = image.convert("RGBA").convert("RGB") if mode != "LA" else image.convert("L")
    elif mode == "P":
        warnings.warn(f"{path}: palette image converted to RGB", ImageWarning, stacklevel=3)
        image = image.convert("RGB")
    elif mode not in ("L", "RGB"):
        warnings.warn(f"{path}: {mode} image converted to {'L' if mode == '1' else 'RGB'}", ImageWarning,
                      stacklevel=3)
        image = image.convert("L" if mode == "1" else "RGB")
    return np.asarray(image, dtype=np.float64) / 255.0


def load_image(path: str | Path, channels: int | None) -> torch.Tensor:
    """A ``[channels, H, W]`` float tensor in [0, 1]; ``channels`` is 1 (gray), 3 (RGB) or None (the file's own)."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the memory check below decides
            width, height = image.size  # from the header: nothing is decoded before the size is checked
            check_fits(width * height * len(image.getbands()) * DECODED_BYTES, f"{path}: a {width}×{height} image",
                       "crop or downscale it first")
            image.load()
            data = _to_array(image, path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: cannot read image ({err})") from None
    if data.ndim == 2 and channels == 3:
        warnings.warn(f"{path}: gray image replicated to RGB", ImageWarning, stacklevel=2)
        data = np.repeat(data[:, :, None], 3, axis=2)
    elif data.ndim == 3 and channels == 1:
        warnings.warn(f"{path}: RGB image converted to gray (ITU-R 601 luma)", ImageWarning, stacklevel=2)
        data = data @ np.array([0.299, 0.587, 0.114])
    tensor = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")  # formats Pillow writes 16-bit gray to


def image_header(path: str | Path) -> tuple[tuple[int, int], int]:
    """The (width, height) of an image file and its bit depth (16 for 16-bit gray, else 8), from its header
    alone (nothing decoded)."""
    try:
        with warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return image.size, 16 if image.mode.startswith("I") else 8
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read image ({err})") from None


def output_bits(source_bits: int, channels: int, path: str | Path) -> int:
    """The depth ``save_image`` keeps for an image of ``source_bits`` and ``channels`` written to ``path``:
    16 for a 16-bit gray source written as PNG or TIFF, else 8."""
    keeps = channels == 1 and _format(Path(path)) in SIXTEEN_BIT_FORMATS
    return 16 if source_bits == 16 and keeps else 8


def _format(path: Path) -> str:
    return Image.registered_extensions().get(path.suffix.lower(), "PNG")


def save_image(image: torch.Tensor, path: str | Path, bits: int = 8) -> Path:
    """Write a ``[C, H, W]`` tensor in [0, 1] as an 8-bit image (16-bit gray with ``bits=16``, as PNG or
    TIFF), atomically (no half-written file)."""
    path = Path(path)
    if bits not in (8, 16) or (bits == 16 and output_bits(16, image.shape[0], path) != 16):
        raise ImageError(f"{path}: cannot write {bits}-bit {image.shape[0]}-channel pixels as {_format(path)}")
    top, dtype = (65535, torch.int32) if bits == 16 else (255, torch.uint8)
    array = image.detach().clamp(0, 1).mul(top).round().to(dtype).cpu()
    array = array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()
    if bits == 16:
        array = array.astype(np.uint16)
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=_format(path)))
    return path
