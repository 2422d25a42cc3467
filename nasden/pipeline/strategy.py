"""The strategy base class: one stage of a recipe.

A strategy has a ``Config`` dataclass (its recipe options) and implements ``_run(ctx)``; the base
``run`` does the lifecycle (announce, run, record the result). Register with
``@register_strategy("name")``; third-party packages use the entry-point group ``nasden.strategies``.
"""
from __future__ import annotations

import subprocess
import sys
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping

import torch

from nasden.data.image_sets import DataError

if TYPE_CHECKING:
    from nasden.core.space import SearchSpace
    from nasden.data.image_sets import RunData
    from nasden.pipeline.run import StageContext


def require_counts(config: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the option if one of ``names`` is not an integer in [1, 1e8]."""
    for name in names:
        if not 1 <= getattr(config, name) <= 100_000_000:
            raise ValueError(f"{name}: expected an integer in [1, 1e8], got {getattr(config, name)}")


def require_learning_rate(lr: float, lr_min: float, name: str = "lr") -> None:
    """Raise ``ValueError`` unless ``0 < lr <= 10`` and ``0 <= lr_min <= lr`` (a cosine from lr to lr_min)."""
    if not 0 < lr <= 10 or not 0 <= lr_min <= lr:
        raise ValueError(f"{name}: expected 0 < {name}_min <= {name} <= 10, got {name}={lr}, {name}_min={lr_min}")


def check_stage_order(stages: list[tuple[str, type[Strategy]]], choice_kinds: set[str],
                      registered: Mapping[str, type[Strategy]]) -> str | None:
    """The first broken contract of a recipe's stages (``(name, strategy class)`` in order) on a space with
    ``choice_kinds``, as a message naming the ``registered`` strategies that would fix it; None if every
    stage gets what it requires."""
    have: set[str] = set()
    for index, (name, strategy) in enumerate(stages):
        if strategy.space_choices and not strategy.space_choices & choice_kinds:
            return (f"stages.{index} ({name}) needs a space with {' or '.join(sorted(strategy.space_choices))} "
                    f"choices; this space has {', '.join(sorted(choice_kinds)) or 'none'}")
        missing = sorted(strategy.requires - have)
        if missing:
            providers = sorted(n for n, s in registered.items() if s.provides & set(missing))
            fix = f" (put {' or '.join(providers)} before it)" if providers else ""
            return f"stages.{index} ({name}) needs {', '.join(missing)} from an earlier stage{fix}"
        have |= strategy.provides
    return None


#: what a stage can leave for the stages after it: the run context's slots (:data:`nasden.pipeline.run.SLOTS`)
SLOT_NAMES = frozenset({"candidates", "arch", "classifier", "final"})


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
    #: gradients before each optimiser step (:class:`nasden.pipeline.training_loop.TrainingLoop` does); otherwise
    #: rank 0 runs the stage alone and the other processes receive its outcome
    data_parallel: ClassVar[bool] = False
    #: what the stage needs an earlier stage to have left in the run (``candidates``, ``classifier``, ...)
    requires: ClassVar[frozenset[str]] = frozenset()
    #: what it leaves for the stages after it (``arch``, ``candidates``, ``classifier``, ``final``)
    provides: ClassVar[frozenset[str]] = frozenset()
    #: choice kinds of which the space must have at least one (``width``, ``op``, ``input``, ``nm``); empty: any space
    space_choices: ClassVar[frozenset[str]] = frozenset()
    #: keys every summary the stage returns has (the conformance suite checks them)
    summary_keys: ClassVar[frozenset[str]] = frozenset()
    #: files in its stage folder that keep their own consistency rather than being written by atomic rename
    #: (an SQLite database that worker processes share)
    transactional_files: ClassVar[frozenset[str]] = frozenset()
    #: the stage can spread its work over processes: ``nasden worker RUN --stage N`` runs :meth:`work`
    has_workers: ClassVar[bool] = False
    #: a step back-propagates through the network (its batches cost activations and their gradients; the other
    #: stages' batches only a forward pass); the memory check before a run counts it
    trains_network: ClassVar[bool] = False
    #: a training step runs every op candidate of a layer (a relaxed supernet): that many times the activations
    runs_every_candidate: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A strategy that requires or provides something no run slot holds is refused when it is defined."""
        super().__init_subclass__(**kwargs)
        unknown = sorted((cls.requires | cls.provides) - SLOT_NAMES)
        if unknown:
            raise TypeError(f"{cls.__name__}: requires or provides {', '.join(map(repr, unknown))}, which no run slot "
                            f"holds ({', '.join(sorted(SLOT_NAMES))})")

    def __init__(self, config: Any):
        self.config = config

    def check_space(self, space: SearchSpace) -> None:
        """Raise ``ValueError("option: why")`` for an option that does not fit ``space`` (``parse_recipe`` calls
        this, so the recipe is refused before anything runs)."""

    def check_data(self, data: RunData) -> None:
        """Raise a :class:`~nasden.common.errors.NasdenError` for an option the run's data cannot serve
        (``nasden.pipeline.preflight`` calls this before the run starts). By default the options named
        ``val_size`` (a validation crop, with ``val_images``) and ``patch`` are checked against the images."""
        val_size, patch = getattr(self.config, "val_size", None), getattr(self.config, "patch", None)
        if val_size:
            data.val_batch(val_size, getattr(self.config, "val_images", None))
        if patch and patch > data.sampler.smallest_side:
            raise DataError(f"patch {patch}: larger than the smallest training image ({data.sampler.smallest_side} "
                            f"pixels)")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Run the stage, resuming from its checkpoint if there is one; returns its summary."""
        ctx.say(f"stage {ctx.index}: {ctx.strategy}" + (" (resuming)" if ctx.has_checkpoint() else ""))
        return self._run(ctx)

    @abstractmethod
    def _run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the stage's work; read and update ``ctx.run`` (space, supernet, candidates, final network)."""

    def work(self, ctx: StageContext, worker: int) -> str:
        """Join the running stage as helper process ``worker`` (≥ 1) until its work is done; a one-line report.
        Only for strategies with ``has_workers``."""
        raise NotImplementedError(f"{type(self).__name__} does not spread its work over processes")


@contextmanager
def helper_processes(ctx: StageContext) -> Iterator[None]:
    """Start ``nasden worker`` helpers 1..workers-1 for the stage while the block runs in this process (worker
    0); wait for them at its end, and kill them if it fails. The process's threads are shared out among the
    workers while they run (:mod:`nasden.common.threads`)."""
    threads = torch.get_num_threads()
    share = max(1, threads // ctx.run.workers)
    torch.set_num_threads(share)
    helpers = [subprocess.Popen([sys.executable, "-m", "nasden.cli", "worker", str(ctx.run.run_dir), "--stage",
                                 str(ctx.index), "--index", str(i), "--threads", str(share), "--quiet"])
               for i in range(1, ctx.run.workers)]
    try:
        yield
        for helper in helpers:
            helper.wait()
    finally:
        for helper in helpers:
            helper.kill()
        torch.set_num_threads(threads)
