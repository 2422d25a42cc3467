"""Evaluating a denoiser on noisy/clean pairs: PSNR, SSIM, cost and latency, as JSON and Markdown."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from torch import Tensor, nn

from nasden.inference import denoise
from nasden.metrics import psnr, ssim


@dataclass
class SetScore:
    """Mean scores over one image set."""

    set: str
    images: int
    psnr: float
    psnr_8bit: float
    ssim: float
    input_psnr: float


def score(model: nn.Module, pairs: Sequence[tuple[str, Tensor, Tensor]], name: str, multiple: int = 1) -> SetScore:
    """Denoise every ``(name, noisy, clean)`` pair and average the metrics."""
    model.eval()
    rows = []
    for _, noisy, clean in pairs:
        out = denoise(model, noisy, multiple)
        rows.append((psnr(out, clean), psnr(out, clean, quantize=True), ssim(out, clean), psnr(noisy, clean)))
    n = len(rows)
    return SetScore(name, n, *(sum(r[i] for r in rows) / n for i in range(4)))


def markdown_table(rows: Sequence[dict]) -> str:
    """A Markdown table with one column per key of the first row."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) and abs(v) >= 1e4 else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def as_dict(score_: SetScore) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(score_).items()}
