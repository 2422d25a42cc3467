"""Colour photos through a gray denoiser, in colour out.

Two ways (``nasden denoise --color``):

* ``channels`` (default): each of R, G and B through the network as a gray image. Sensor noise and
  synthetic AWGN are (close to) independent per channel, so each channel is exactly the kind of input a
  gray denoiser was trained on; this removes chrominance noise too, at 3× the FLOPs.
* ``luma``: only the luminance Y (ITU-R BT.601) through the network; the chrominance Cb, Cr is kept as
  it came. One network pass, but the noise in Cb and Cr stays (coloured speckle).

``bench/color_through_gray.py`` measures both on CBSD68.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

ColorMode = Literal["channels", "luma"]
COLOR_MODES: tuple[str, ...] = ("channels", "luma")
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def to_ycbcr(rgb: Tensor) -> Tensor:
    """``[3, H, W]`` RGB in [0, 1] → Y, Cb, Cr (Cb and Cr centred on 0)."""
    return torch.einsum("ij,jhw->ihw", _RGB_TO_YCBCR.to(rgb), rgb)


def to_rgb(ycbcr: Tensor) -> Tensor:
    return torch.einsum("ij,jhw->ihw", torch.linalg.inv(_RGB_TO_YCBCR).to(ycbcr), ycbcr)


def denoise_in_color(denoise_gray: Callable[[Tensor], Tensor], rgb: Tensor, mode: ColorMode = "channels") -> Tensor:
    """Denoise a ``[3, H, W]`` image with ``denoise_gray`` (``[1, H, W]`` → ``[1, H, W]``) as ``mode`` says."""
    if mode == "channels":
        return torch.cat([denoise_gray(rgb[c: c + 1]) for c in range(3)])
    if mode != "luma":
        raise ValueError(f"color mode {mode!r}: expected one of {', '.join(COLOR_MODES)}")
    ycbcr = to_ycbcr(rgb)
    return to_rgb(torch.cat([denoise_gray(ycbcr[:1]), ycbcr[1:]]))
