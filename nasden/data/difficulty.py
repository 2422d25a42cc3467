"""Pseudo labels of restoration difficulty for denoising (ClassPruning, Eq. 2-3).

The degradation R = y - x of each training pair is sorted by its variance into L classes of equal
size; each class is represented by its median variance. Every R is then rescaled to each class's
median, R_i = R * sqrt(Var(R_i^m)) / sqrt(Var(R)) (Eq. 2), giving the labelled inputs
y_i = x + R_i (Eq. 3): the same scene and noise pattern at L difficulty levels.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: residuals with a smaller standard deviation than this are treated as noise-free (no rescaling)
MIN_STD = 1e-6


def residual_variance(noisy: Tensor, clean: Tensor) -> Tensor:
    """Var[R] of every image of a batch, R = noisy - clean."""
    return (noisy - clean).flatten(1).var(1)


def median_variances(variances: Tensor, classes: int) -> Tensor:
    """Sort ``variances`` into ``classes`` equal-count classes; each class's median variance, ascending."""
    if not 2 <= classes <= variances.numel():
        raise ValueError(f"{variances.numel()} residuals cannot be split into {classes} difficulty classes")
    chunks = variances.flatten().sort().values.tensor_split(classes)
    return torch.stack([chunk.median() for chunk in chunks])


def pseudo_labelled(noisy: Tensor, clean: Tensor, medians: Tensor) -> tuple[Tensor, Tensor]:
    """Every image at every difficulty: inputs ``[L*B, C, H, W]`` (Eq. 3) and their class labels ``[L*B]``."""
    residual = noisy - clean
    std = residual.flatten(1).std(1).clamp(min=MIN_STD).view(-1, 1, 1, 1)
    inputs = torch.cat([clean + residual * median.sqrt() / std for median in medians])
    labels = torch.arange(len(medians), device=noisy.device).repeat_interleave(noisy.shape[0])
    return inputs, labels
