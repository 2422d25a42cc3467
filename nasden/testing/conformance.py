"""Conformance suite: every registered strategy must run on a toy space in seconds and resume.

Third-party strategies run it too::

    from nasden.testing.conformance import check_strategy
    def test_my_strategy(tmp_path):
        check_strategy("my_strategy", tmp_path)
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from nasden.recipe import parse_recipe
from nasden.registry import STRATEGIES
from nasden.run import StageContext, create_run, execute, load_torch


class Interrupted(Exception):
    """Raised in place of a kill, right after a stage's first checkpoint."""


def toy_recipe(strategy: str, seed: int = 0) -> dict[str, Any]:
    """A recipe that runs ``strategy`` with its smoke options on the toy space and tiny data."""
    cls = STRATEGIES.get(strategy)
    return {
        "name": f"conformance-{strategy}", "seed": seed, "device": "cpu",
        "data": {"patch": 16, "batch": 2, "val_images": 1, "val_crop": 32, "noise": {"sigma": [0, 50]}},
        "space": dict(cls.smoke_space),
        "stages": [*cls.smoke_stages_before, {"strategy": strategy, **cls.smoke_options}],
    }


@contextmanager
def interrupt_after_first_checkpoint(stage: int) -> Iterator[None]:
    """Raise :class:`Interrupted` right after stage ``stage`` writes its first checkpoint."""
    original = StageContext.save_checkpoint

    def save_then_stop(self: StageContext, state: dict[str, Any]) -> None:
        original(self, state)
        if self.index == stage:
            raise Interrupted

    StageContext.save_checkpoint = save_then_stop  # type: ignore[method-assign]
    try:
        yield
    finally:
        StageContext.save_checkpoint = original  # type: ignore[method-assign]


def _outcome(run_dir: Path) -> tuple[list[dict], dict[str, torch.Tensor]]:
    context = load_torch(run_dir / "context.pt")
    results = [json.loads(p.read_text()) for p in sorted((run_dir / "stages").glob("*/result.json"))]
    return results, context["supernet"] | ({"final." + k: v for k, v in context["final"].items()}
                                           if context["final"] else {})


def without_timings(value: Any) -> Any:
    """``value`` without wall-clock measurements (keys ending in ``_ms`` or ``_seconds``), which vary."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.endswith(("_ms", "_seconds"))}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def check_strategy(strategy: str, tmp_path: Path) -> None:
    """Run ``strategy`` once straight through and once interrupted + resumed; both must agree."""
    recipe = parse_recipe(toy_recipe(strategy), f"<conformance {strategy}>")
    straight = create_run(recipe, tmp_path / "straight")
    summaries = execute(straight, quiet=True)
    assert len(summaries) == len(recipe.stages) and all(isinstance(s, dict) for s in summaries)
    json.dumps(summaries)  # JSON-ready
    results, weights = _outcome(straight)
    assert results == summaries

    resumed = create_run(recipe, tmp_path / "resumed")
    with interrupt_after_first_checkpoint(len(recipe.stages) - 1):
        try:
            execute(resumed, quiet=True)
            interrupted = False
        except Interrupted:
            interrupted = True
    execute(resumed, quiet=True)
    again, weights_again = _outcome(resumed)
    assert without_timings(again) == without_timings(results), f"{strategy}: resuming changed the result"
    assert weights.keys() == weights_again.keys()
    for key, value in weights.items():
        torch.testing.assert_close(weights_again[key], value, rtol=1e-5, atol=1e-6, msg=f"{strategy}: {key}")
    if not interrupted:  # a stage that never checkpoints must still be idempotent
        assert not any((resumed / "stages").glob("*/checkpoint.pt"))
