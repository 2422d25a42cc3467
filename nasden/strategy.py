"""The strategy base class: one stage of a recipe.

A strategy has a ``Config`` dataclass (its recipe options) and implements ``_run(ctx)``; the base
``run`` does the lifecycle (announce, run, record the result). Register with
``@register_strategy("name")``; third-party packages use the entry-point group ``nasden.strategies``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from nasden.run import StageContext


def require_counts(config: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the option if one of ``names`` is not an integer in [1, 1e8]."""
    for name in names:
        if not 1 <= getattr(config, name) <= 100_000_000:
            raise ValueError(f"{name}: expected an integer in [1, 1e8], got {getattr(config, name)}")


def require_learning_rate(lr: float, lr_min: float, name: str = "lr") -> None:
    """Raise ``ValueError`` unless ``0 < lr <= 10`` and ``0 <= lr_min <= lr`` (a cosine from lr to lr_min)."""
    if not 0 < lr <= 10 or not 0 <= lr_min <= lr:
        raise ValueError(f"{name}: expected 0 < {name}_min <= {name} <= 10, got {name}={lr}, {name}_min={lr_min}")


class StageFailed(RuntimeError):
    """A stage that cannot go on (e.g. its loss became NaN); its last good checkpoint is kept."""


class Strategy(ABC):
    """One stage. Subclasses set ``Config`` and implement ``_run``, returning a JSON-ready summary."""

    Config: ClassVar[type]
    #: tiny options under which the conformance suite runs the strategy in seconds on a CPU
    smoke_options: ClassVar[dict[str, Any]] = {}
    #: a registered space (``name`` + options) fit for the strategy; the toy space by default
    smoke_space: ClassVar[dict[str, Any]] = {"name": "toy"}
    #: stages the strategy needs before it (e.g. a gate needs candidates), with their smoke options
    smoke_stages_before: ClassVar[list[dict[str, Any]]] = []
    #: under torchrun, run on every process, each on its share of every batch (``ctx.shard``), averaging
    #: gradients before each optimiser step (:class:`nasden.optimisation.Optimisation` does); otherwise
    #: rank 0 runs the stage alone and the other processes receive its outcome
    data_parallel: ClassVar[bool] = False

    def __init__(self, config: Any):
        self.config = config

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Run the stage, resuming from its checkpoint if there is one; returns its summary."""
        ctx.say(f"stage {ctx.index}: {ctx.strategy}" + (" (resuming)" if ctx.has_checkpoint() else ""))
        return self._run(ctx)

    @abstractmethod
    def _run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the stage's work; read and update ``ctx.run`` (space, supernet, candidates, final network)."""
