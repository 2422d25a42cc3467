"""Reading and writing image files: odd files are converted with a warning or rejected in one line."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nasden.common.atomic import atomic_write
from nasden.common.errors import NasdenError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


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
        with Image.open(path) as image:
            image.load()
            data = _to_array(image, path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
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


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write a ``[C, H, W]`` tensor in [0, 1] as an 8-bit image, atomically (no half-written file)."""
    path = Path(path)
    array = (image.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu())
    array = array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format=image_format))
    return path
