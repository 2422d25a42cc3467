"""Train the plain network of a space (conv 3×3 everywhere, chain inputs, full width) as one nasden run."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from frontier import plain_arch

from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute


def train_plain(folder: Path, name: str, space: dict[str, Any], data: dict[str, Any], steps: int,
                sets: list[str], lr: float = 1e-3) -> tuple[Path, list[dict[str, Any]], float]:
    """Train ``steps`` (Adam, MSE, cosine from ``lr``) on ``data``, evaluate on ``sets``; the run folder, the
    stage summaries and the wall seconds."""
    raw = {"name": name, "seed": 0, "data": {"patch": 48, "batch": 16, **data}, "space": space,
           "stages": [{"strategy": "train", "arch": plain_arch(space), "steps": steps, "lr": lr, "loss": "mse",
                       "val_every": max(1, steps // 4)},
                      {"strategy": "evaluate", "sets": sets}]}
    started = time.perf_counter()
    run_dir = create_run(parse_recipe(raw, name), folder / name)
    summaries = execute(run_dir, quiet=True)
    return run_dir, summaries, time.perf_counter() - started
