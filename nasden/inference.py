"""Running a trained denoiser on whole images of any size."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from nasden.data import pad_to_multiple


@torch.no_grad()
def denoise(model: nn.Module, noisy: Tensor, multiple: int = 1) -> Tensor:
    """Denoise one ``[C, H, W]`` image, padding to a multiple of ``multiple`` (U-Nets) and cropping back."""
    device = next(model.parameters()).device
    padded, (h, w) = pad_to_multiple(noisy[None].to(device), multiple)
    return model(padded)[0, :, :h, :w].cpu()
