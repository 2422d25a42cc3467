"""Synthetic noise models: AWGN at a fixed or blind sigma, and Poisson-Gaussian noise.

Sigmas are on the 0-255 scale, as the denoising literature quotes them. Every draw takes an
explicit ``torch.Generator`` so a seed reproduces the same noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


@dataclass
class NoiseConfig:
    """``kind``: gaussian (AWGN) or poisson_gaussian. ``sigma``: a number, or [low, high] for blind
    noise drawn per image. ``levels``: blind noise drawn per image from these sigmas instead (the
    15/25/50 mix of ClassPruning); it replaces ``sigma``. ``peak``: photons at white for Poisson
    noise (a number or [low, high])."""

    kind: Literal["gaussian", "poisson_gaussian"] = "gaussian"
    sigma: float | list[float] = 25.0
    peak: float | list[float] = 30.0
    levels: list[float] | None = None

    def __post_init__(self) -> None:
        for name in ("sigma", "peak"):
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            if len(values) not in (1, 2) or any(v < 0 for v in values) or values != sorted(values):
                raise ValueError(f"{name}: expected a non-negative number or [low, high], got {value!r}")
        if min(self.peak if isinstance(self.peak, list) else [self.peak]) <= 0:
            raise ValueError(f"peak: expected a positive number, got {self.peak!r}")
        if self.levels is not None and (not self.levels or any(not 0 <= v <= 255 for v in self.levels)):
            raise ValueError(f"levels: expected a non-empty list of sigmas in [0, 255], got {self.levels!r}")

    @property
    def sigma_range(self) -> tuple[float, float]:
        """The lowest and highest sigma this noise draws."""
        values = self.levels or (self.sigma if isinstance(self.sigma, list) else [self.sigma])
        return float(min(values)), float(max(values))


def _draw(value: float | list[float], n: int, generator: torch.Generator) -> Tensor:
    if isinstance(value, list):
        low, high = value if len(value) == 2 else (value[0], value[0])
        return low + (high - low) * torch.rand(n, generator=generator)
    return torch.full((n,), float(value))


def add_noise(clean: Tensor, config: NoiseConfig, generator: torch.Generator) -> Tensor:
    """Noisy version of a ``[N, C, H, W]`` batch in [0, 1]; blind parameters are drawn per image."""
    n = clean.shape[0]
    if config.levels:
        sigma = torch.tensor(config.levels)[torch.randint(len(config.levels), (n,), generator=generator)]
    else:
        sigma = _draw(config.sigma, n, generator)
    sigma = sigma.view(n, 1, 1, 1) / 255.0
    noisy = clean
    if config.kind == "poisson_gaussian":
        peak = _draw(config.peak, n, generator).view(n, 1, 1, 1)
        noisy = torch.poisson(clean.clamp(min=0) * peak, generator=generator) / peak
    return noisy + sigma * torch.randn(clean.shape, generator=generator)
