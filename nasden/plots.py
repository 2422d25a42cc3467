"""Figures a person would rather look at than read: PSNR against FLOPs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nasden.atomic import atomic_write  # noqa: E402


def psnr_flops_figure(series: dict[str, Sequence[tuple[float, float]]], title: str) -> Figure:
    """One line (or scatter) per series of (FLOPs/pixel, PSNR) points."""
    figure, axes = plt.subplots(figsize=(6, 4), dpi=110)
    for name, points in series.items():
        if not points:
            continue
        flops, psnr = zip(*sorted(points))
        axes.plot([f / 1e3 for f in flops], psnr, marker="o", markersize=3, label=name)
    axes.set_xlabel("FLOPs per pixel (thousands)")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"), suffix=".png")
    return path
