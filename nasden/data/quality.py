"""PSNR and SSIM as the denoising literature computes them."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(output: Tensor, target: Tensor, quantize: bool = False) -> float:
    """PSNR in dB of ``output`` clipped to [0, 1] against ``target`` in [0, 1].

    ``quantize`` rounds the output to 8 bits first, as most published denoising tables do.
    """
    output = output.detach().clamp(0, 1)
    if quantize:
        output = output.mul(255).round().div(255)
    mse = torch.mean((output.double() - target.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def ssim(output: Tensor, target: Tensor) -> float:
    """SSIM of ``[C, H, W]`` images in [0, 1], averaged over channels.

    Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: an 11-tap Gaussian window, statistics over the
    valid region only (scikit-image crops the 5-pixel border the filter's padding touches).
    """
    x = output.detach().clamp(0, 1).double()
    y = target.detach().double()
    if x.ndim == 2:
        x, y = x[None], y[None]
    window = _gaussian_window()
    c = x.shape[0]
    maps = torch.cat([x, y, x * x, y * y, x * y]).unsqueeze(1)  # one separable blur for all five maps
    blurred = F.conv2d(F.conv2d(maps, window.view(1, 1, -1, 1)), window.view(1, 1, 1, -1)).squeeze(1)
    mu_x, mu_y, xx, yy, xy = blurred.split(c)
    var_x = xx - mu_x ** 2
    var_y = yy - mu_y ** 2
    cov = xy - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return value.mean().item()
