"""Runs: stages in order over a shared context, with atomic checkpoints and resume.

A run folder holds ``recipe.yaml`` (resolved), ``context.pt`` (what completed stages left: supernet
weights, candidates, chosen architecture, final network), ``stages/NN-<strategy>/`` with each
stage's ``checkpoint.pt`` and ``result.json``, ``final.pt`` (the network to deploy) and
``tensorboard/``. Everything is written to a temporary file and renamed, so a kill at any moment
leaves the last complete version. Checkpoints load with ``weights_only=True``.

Under torchrun (:mod:`nasden.common.distributed`) every process runs :func:`execute`: rank 0 reads the run
folder and writes it; the others receive what it read, run the data-parallel stages with it and
receive the outcome of every other stage.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch import Tensor, nn

from nasden.common import distributed
from nasden.common.atomic import atomic_write, remove_orphans
from nasden.common.errors import NasdenError, RunError, StageFailed
from nasden.common.progress import progress
from nasden.common.registry import STRATEGIES
from nasden.common.storage import load_torch, save_json, save_torch
from nasden.core.extract import extract
from nasden.core.gates import gate_from_spec
from nasden.core.space import Architecture, SearchSpace
from nasden.core.specs import build_network, is_dynamic
from nasden.core.supernet import Supernet, recalibrate_bn
from nasden.data.image_sets import RunData
from nasden.deploy import model_file as final
from nasden.deploy.inference import denoise
from nasden.pipeline import data_record
from nasden.pipeline.recipe import Recipe, load_recipe
from nasden.pipeline.run_lock import RunLock
from nasden.pipeline.tensorboard_log import log_samples, open_writer


def _serialise(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def resolve_device(name: str) -> torch.device:
    """The recipe's ``device``; under torchrun, ``auto`` and ``cuda`` mean this process's GPU (``LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StageFailed(f"device {name!r} was asked for but CUDA is not available; use device: auto or cpu")
    if name == "cuda" and distributed.active():
        return torch.device("cuda", distributed.local_rank() % torch.cuda.device_count())
    return torch.device(name)


def _rebuild_gate(run: RunContext, spec: dict[str, Any]) -> nn.Module:
    return gate_from_spec(run.supernet, spec)


def _rebuild_final(run: RunContext, spec: dict[str, Any]) -> nn.Module:
    return build_network(run.space, spec)


CONTEXT_FORMAT = 2  # context.pt's layout (2: the slots below)
#: What stages leave for the stages after them (``Strategy.requires`` / ``provides`` name these), each
#: with how it is stored in ``context.pt`` and shared under torchrun: ``None`` for plain data (candidates:
#: ``[{"arch", "flops_per_pixel", "psnr"}]``; arch: the chosen architecture), else the function that
#: rebuilds a module from its spec (the module is kept as ``<slot>``, its spec as ``<slot>_spec``).
SLOTS: dict[str, Callable[[RunContext, dict[str, Any]], nn.Module] | None] = {
    "candidates": None, "arch": None, "classifier": _rebuild_gate, "final": _rebuild_final}


class RunContext:
    """What the stages of a run share: space, supernet, data, device, writer, the :data:`SLOTS` stages filled
    and their summaries so far."""

    def __init__(self, recipe: Recipe, run_dir: Path, quiet: bool = False, workers: int = 1):
        self.recipe, self.run_dir, self.quiet = recipe, run_dir, quiet or not distributed.is_main()
        self.workers = workers  # local processes a stage may run its trials on (evolution)
        self.device = resolve_device(recipe.device)
        self.space: SearchSpace = recipe.build_space()
        torch.manual_seed(recipe.seed)
        self.supernet = Supernet(self.space).to(self.device)
        self.data = RunData(recipe.data, self.space.in_channels, recipe.seed)
        self.writer = open_writer(run_dir)
        self.candidates: list[dict[str, Any]] = []
        self.arch: Architecture | None = None
        self.classifier: nn.Module | None = None  # ClassPruning's difficulty classifier (a gate)
        self.classifier_spec: dict[str, Any] | None = None
        self.final: nn.Module | None = None  # the network to deploy (nasden.deploy.model_file)
        self.final_spec: dict[str, Any] | None = None
        self.summaries: list[dict[str, Any]] = []

    @property
    def final_arch(self) -> Architecture | None:
        """The architecture of a static final network (None for a dynamic one)."""
        return self.final_spec.get("arch") if self.final_spec else None

    def calibration_batches(self, count: int) -> list[Tensor]:
        """``count`` training batches on the device to recalibrate BatchNorm statistics with (none if the space
        has no BatchNorm: :func:`nasden.core.supernet.recalibrate_bn` then does nothing)."""
        if not self.space.has_batchnorm:
            return []
        return [batch.to(self.device) for batch in self.data.calibration_batches(count)]

    def set_final(self, model: nn.Module, spec: dict[str, Any]) -> None:
        """Make ``model`` the run's result and write ``final.pt``; ``spec`` rebuilds it
        (:func:`nasden.core.specs.build_network`)."""
        self.final, self.final_spec = model, spec
        final.save(model, spec, self.run_dir / final.FILE_NAME, self.recipe.space,
                   final.training_record(self.recipe.data))

    def set_classifier(self, gate: nn.Module) -> None:
        """Keep a difficulty classifier (a gate, rebuilt by its ``spec``) for the stages that follow."""
        self.classifier, self.classifier_spec = gate.to(self.device), gate.spec

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"format": CONTEXT_FORMAT, "completed": len(self.summaries),
                                 "summaries": self.summaries, "supernet": self.supernet.state_dict()}
        for slot, rebuild in SLOTS.items():
            value = getattr(self, slot)
            if rebuild is None or value is None:
                state[slot] = value
            else:
                state[slot] = {"spec": getattr(self, f"{slot}_spec"), "state_dict": value.state_dict()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != CONTEXT_FORMAT:
            raise RunError(f"{self.run_dir / 'context.pt'}: written by an older nasden (before the shared-weight "
                           f"final network); start the run again with nasden search")
        self.summaries = list(state["summaries"])
        self.supernet.load_state_dict(state["supernet"])
        for slot, rebuild in SLOTS.items():
            value = state.get(slot)
            if rebuild is not None and value is not None:
                module = rebuild(self, value["spec"])
                module.load_state_dict(value["state_dict"])
                setattr(self, f"{slot}_spec", value["spec"])
                value = module.to(self.device).eval()
            setattr(self, slot, value)

    def share_from_main(self, weights: bool) -> None:
        """Under torchrun, give every process rank 0's outcome of a stage: its summaries and data slots and,
        with ``weights``, everything else (weights, classifier, final network)."""
        if not distributed.active():
            return
        if weights:  # sent as torch.save bytes, so GPU tensors arrive on the CPU, not on rank 0's GPU
            data = distributed.from_main(lambda: _serialise(self.state_dict()))
            if not distributed.is_main():
                self.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        else:
            plain = [slot for slot, rebuild in SLOTS.items() if rebuild is None]
            self.summaries, *values = distributed.from_main(
                lambda: [self.summaries, *(getattr(self, slot) for slot in plain)])
            for slot, value in zip(plain, values):
                setattr(self, slot, value)


class StageContext:
    """One stage's view of the run, with its own folder, checkpoint and TensorBoard prefix."""

    def __init__(self, run: RunContext, index: int, strategy: str, data_parallel: bool = False):
        self.run, self.index, self.strategy = run, index, strategy
        self.dir = run.run_dir / "stages" / f"{index:02d}-{strategy}"
        self.checkpoint_path = self.dir / "checkpoint.pt"
        self.seed = run.recipe.seed + 1000 * (index + 1)
        self.tag = f"{index:02d}-{strategy}"
        # a data-parallel stage under torchrun: this process's share of every batch (rank, processes)
        self.shard = distributed.shard() if data_parallel else None

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The stage's checkpoint (rank 0's in a data-parallel stage), or None."""
        def load() -> dict[str, Any] | None:
            return load_torch(self.checkpoint_path) if self.has_checkpoint() else None
        return load() if self.shard is None else distributed.from_main(load)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        save_torch(state, self.checkpoint_path)

    def say(self, message: str) -> None:
        if not self.run.quiet:
            print(message, flush=True)

    def progress(self, total: int, initial: int = 0) -> Any:
        return progress(total, initial, desc=self.tag, quiet=self.run.quiet)

    def scalar(self, name: str, value: float, step: int) -> None:
        self.run.writer.add_scalar(f"{self.tag}/{name}", value, step)

    @torch.no_grad()
    def log_subnetwork(self, arch: Architecture, step: int, label: str) -> None:
        """:meth:`log_denoised` for the supernet's sub-network ``arch``, its BatchNorm recalibrated for the
        pictures only: the supernet's statistics are left as they were."""
        supernet = self.run.supernet
        buffers = {name: buffer.clone() for name, buffer in supernet.named_buffers()}
        recalibrate_bn(supernet, arch, self.run.calibration_batches(8))
        network = extract(supernet, arch).eval()
        for name, buffer in supernet.named_buffers():
            buffer.copy_(buffers[name])
        self.log_denoised(network, step, label=label)

    @torch.no_grad()
    def log_denoised(self, model: nn.Module, step: int, count: int = 2, label: str = "sample") -> None:
        """TensorBoard images ``<stage>/<label>/<image>`` (noisy | denoised | clean) of the first ``count``
        validation pairs; for a dynamic model, the candidate each image took as text beside them."""
        dynamic = is_dynamic(model)
        for name, noisy, clean in self.run.data.val[:count]:
            result = denoise(model, noisy.to(self.run.device), self.run.space.resolution_multiple)
            log_samples(self.run.writer, f"{self.tag}/{label}/{name}", noisy, result.image.cpu(), clean, step)
            if dynamic:
                chosen = result.choices[0]
                self.run.writer.add_text(f"{self.tag}/{label}/{name}/route", f"candidate {chosen} of "
                                         f"{len(model.candidates)} ({model.flops[chosen]:.4g} FLOPs/pixel)", step)

    def check_loss(self, loss: torch.Tensor, step: int, last_checkpoint: int) -> None:
        """Stop the stage with a clear message if ``loss`` is NaN or infinite."""
        if not torch.isfinite(loss):
            self.fail(f"loss became {loss.item()} at step {step}", last_checkpoint)

    def fail(self, what: str, last_checkpoint: int | None) -> None:
        """Stop the stage, saying what went wrong, where it restarts and how to recover. ``last_checkpoint``:
        the step of the last checkpoint written before things went wrong, or None when the stage's checkpoint
        holds what failed (it is moved aside to ``checkpoint.diverged.pt`` and the stage restarts)."""
        if last_checkpoint is None and self.has_checkpoint():
            aside = self.dir / "checkpoint.diverged.pt"
            if distributed.is_main():
                self.checkpoint_path.replace(aside)
            kept = f"its checkpoint holds the failed network, moved aside to {aside}; the stage restarts"
        elif last_checkpoint and self.has_checkpoint():
            kept = f"the last checkpoint before it (step {last_checkpoint}) is kept in {self.checkpoint_path}"
        else:
            kept = "the stage has no checkpoint and restarts"
        raise StageFailed(f"stage {self.index} ({self.strategy}): {what}; {kept}. Lower the learning rate and "
                          f"continue: nasden resume {self.run.run_dir} -o stages.{self.index}.lr=...")


def create_run(recipe: Recipe, run_dir: Path) -> Path:
    """Make a run folder holding the resolved recipe; anything but a missing path or an empty folder is refused."""
    if run_dir.exists() and not run_dir.is_dir():  # a file, FIFO or device is never replaced
        raise RunError(f"{run_dir}: exists and is not a folder; --out must name a new or empty folder")
    if (run_dir / "recipe.yaml").exists():
        raise RunError(f"{run_dir} already holds a run; continue it with `nasden resume {run_dir}`")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir}: not empty and holds no run (no recipe.yaml); choose a new --out folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"{run_dir}: cannot create the run folder ({err.strerror})") from None
    recipe = dataclasses.replace(recipe, data=data_record.absolute_folders(recipe.data))
    data_record.record(recipe.data, run_dir)
    atomic_write(run_dir / "recipe.yaml", lambda tmp: Path(tmp).write_text(
        f"# resolved recipe of run {run_dir.name}; continue with: nasden resume {run_dir}\n"
        + yaml.safe_dump(recipe.to_dict(), sort_keys=False)))
    return run_dir


def open_run(run_dir: Path, quiet: bool = False, workers: int = 1) -> RunContext:
    """The context of the run in ``run_dir`` with what its completed stages left."""
    context = run_dir / "context.pt"
    recipe, state = distributed.from_main(lambda: (load_recipe(run_dir / "recipe.yaml"),
                                                   load_torch(context) if context.exists() else None))
    ctx = RunContext(recipe, run_dir, quiet, workers)
    if state is not None:
        ctx.load_state_dict(state)
    return ctx


def execute(run_dir: Path, quiet: bool = False, workers: int = 1) -> list[dict[str, Any]]:
    """Run (or resume) every stage of the run in ``run_dir``; returns the stage summaries.

    ``workers``: local processes for stages that spread trials over processes (evolution). One process
    (or torchrun group) at a time: rank 0 holds the run's lock and first removes temporary files that
    a kill left behind."""
    with RunLock(run_dir) if distributed.is_main() else contextlib.nullcontext():
        if distributed.is_main():
            remove_orphans(run_dir)
            data_record.check(load_recipe(run_dir / "recipe.yaml").data, run_dir)
        ctx = open_run(run_dir, quiet, workers)
        done_before = len(ctx.summaries)
        try:
            for index, stage in enumerate(ctx.recipe.stages):
                _run_stage(ctx, index, stage.strategy, stage.options)
            if distributed.is_main() and done_before:  # a final.pt this process wrote needs no check
                _check_final(ctx)
        finally:
            ctx.writer.close()
    if not ctx.quiet:
        print(f"done: {run_dir}", file=sys.stderr)
    return ctx.summaries


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return True


def _check_final(ctx: RunContext) -> None:
    """A run that holds a final network has a ``final.pt`` that loads; a missing or damaged one is written
    again from ``context.pt``, which holds the same network."""
    if ctx.final is None or ctx.final_spec is None:
        return
    try:
        final.load(ctx.run_dir / final.FILE_NAME)
    except NasdenError as err:
        warnings.warn(f"{err}; written again from {ctx.run_dir / 'context.pt'}", stacklevel=1)
        ctx.set_final(ctx.final, ctx.final_spec)


def _run_stage(ctx: RunContext, index: int, name: str, options: Any) -> None:
    strategy = STRATEGIES.get(name)(options)
    stage_ctx = StageContext(ctx, index, name, strategy.data_parallel)
    if index < len(ctx.summaries):  # done: its result is on disk, readable, or written again from context.pt
        if not _readable_json(stage_ctx.dir / "result.json"):
            save_json(ctx.summaries[index], stage_ctx.dir / "result.json")
        return
    torch.manual_seed(stage_ctx.seed)
    if strategy.data_parallel:
        ctx.summaries.append(strategy.run(stage_ctx))
    else:  # under torchrun, rank 0 runs it; its summary (or error) reaches every process
        ctx.summaries.append(distributed.from_main(lambda: strategy.run(stage_ctx)))
    ctx.share_from_main(weights=not strategy.data_parallel)
    save_torch(ctx.state_dict(), ctx.run_dir / "context.pt")
    save_json(ctx.summaries[index], stage_ctx.dir / "result.json")
