"""Evaluating a denoiser on noisy/clean pairs: PSNR, SSIM, cost and latency, as JSON and Markdown."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from nasden.core.cost import cost
from nasden.core.space import Architecture, SearchSpace
from nasden.core.specs import is_dynamic
from nasden.core.supernet import Supernet, recalibrate_bn
from nasden.data.quality import psnr, ssim
from nasden.deploy.inference import denoise


@dataclass
class SetScore:
    """Mean scores over one image set."""

    set: str
    images: int
    psnr: float
    psnr_8bit: float
    ssim: float
    input_psnr: float
    denoise_ms: float  # measured wall time per image


def score(model: nn.Module, pairs: Sequence[tuple[str, Tensor, Tensor]], name: str, multiple: int = 1) -> SetScore:
    """Denoise every ``(name, noisy, clean)`` pair and average the metrics and the wall time."""
    model.eval()
    rows = []
    for _, noisy, clean in pairs:
        start = time.perf_counter()
        out = denoise(model, noisy, multiple).image
        elapsed_ms = 1000 * (time.perf_counter() - start)
        rows.append((psnr(out, clean), psnr(out, clean, quantize=True), ssim(out, clean), psnr(noisy, clean),
                     elapsed_ms))
    n = len(rows)
    return SetScore(name, n, *(sum(r[i] for r in rows) / n for i in range(5)))


def markdown_table(rows: Sequence[dict]) -> str:
    """A Markdown table with one column per key of the first row."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(v: object) -> str:
        if not isinstance(v, float):
            return str(v)
        return f"{v:.4g}" if abs(v) >= 1e4 else f"{v:.3f}"

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def as_dict(score_: SetScore) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(score_).items()}


def psnr_per_image(output: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB of every image of a batch, output clipped to [0, 1]."""
    mse = (output.clamp(0, 1) - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-12))


@torch.no_grad()
def arch_psnr(supernet: Supernet, arch: Architecture, noisy: Tensor, clean: Tensor,
              calibration: Sequence[Tensor] = ()) -> Tensor:
    """Per-image PSNR of one architecture run by the supernet (no autograd).

    With ``calibration`` batches, BatchNorm statistics are first recomputed for ``arch``.
    """
    if calibration:
        recalibrate_bn(supernet, arch, calibration)
    training = supernet.training
    supernet.eval()
    try:
        return psnr_per_image(supernet(noisy, arch), clean)
    finally:
        supernet.train(training)


def evaluate_network(model: nn.Module, space: SearchSpace, spec: dict[str, Any],
                     pairs: Sequence[tuple[str, Tensor, Tensor]], name: str) -> dict[str, Any]:
    """Scores of a final network on one set, with the FLOPs/pixel it costs (for a dynamic network:
    the mean it actually spent, gate included, and how often it chose each candidate)."""
    dynamic = is_dynamic(model)
    if dynamic:
        model.reset_counts()
    row: dict[str, Any] = as_dict(score(model, pairs, name, space.resolution_multiple))
    if dynamic:
        spent = model.spent()
        row.update(flops_per_pixel=round(spent["flops_per_pixel"], 1), choices=spent["choices"],
                   shares=[round(s, 4) for s in spent["shares"]])
    else:
        c = cost(space, spec["arch"])
        row.update(flops_per_pixel=c.flops_per_pixel, params=c.params)
    return row
