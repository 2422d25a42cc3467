"""Learning-rate schedules shared by the training strategies."""
from __future__ import annotations

import math

import torch


def cosine_lr(step: int, steps: int, high: float, low: float) -> float:
    """Cosine annealing from ``high`` at step 0 to ``low`` at ``steps``."""
    return low + 0.5 * (high - low) * (1 + math.cos(math.pi * step / steps))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
