"""TensorBoard logging shared by the stages: writers, denoised samples, architecture probabilities."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from nasden.common.distributed import is_main


class NullWriter:
    """A TensorBoard writer that writes nothing (torchrun processes other than rank 0)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def open_writer(run_dir: Path) -> SummaryWriter | NullWriter:
    """The run's TensorBoard writer; a :class:`NullWriter` on torchrun processes other than rank 0."""
    return SummaryWriter(str(run_dir / "tensorboard")) if is_main() else NullWriter()


def log_samples(writer: SummaryWriter, tag: str, noisy: Tensor, denoised: Tensor, clean: Tensor, step: int) -> None:
    """One image per sample: noisy | denoised | clean side by side."""
    row = torch.cat([noisy, denoised.clamp(0, 1), clean], dim=-1).clamp(0, 1)
    writer.add_image(tag, row, step)


def log_choice_probabilities(writer: SummaryWriter, probabilities: dict[str, dict[str, float]], step: int) -> None:
    """One scalar per label and candidate: ``arch/<label>/<candidate>``."""
    for label, values in probabilities.items():
        for candidate, p in values.items():
            writer.add_scalar(f"arch/{label}/{candidate}", p, step)


def add_choice_layout(writer: SummaryWriter, probabilities: dict[str, dict[str, float]]) -> None:
    """TensorBoard's Custom Scalars layout: one chart per label with all its candidates' probabilities
    together (under "architecture", grouped by kind: op, input), instead of one chart per candidate."""
    categories: dict[str, dict[str, list]] = {}
    for label, values in probabilities.items():
        kind = label.split(":", 1)[0]
        categories.setdefault(f"architecture: {kind}", {})[label] = [
            "Multiline", [f"arch/{label}/{candidate}" for candidate in values]]
    writer.add_custom_scalars(categories)
