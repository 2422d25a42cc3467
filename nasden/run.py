"""Runs: stages in order over a shared context, with atomic checkpoints and resume.

A run folder holds ``recipe.yaml`` (resolved), ``context.pt`` (what completed stages left: supernet
weights, candidates, chosen architecture, final network), ``stages/NN-<strategy>/`` with each
stage's ``checkpoint.pt`` and ``result.json``, ``final.pt`` (the network to deploy) and
``tensorboard/``. Everything is written to a temporary file and renamed, so a kill at any moment
leaves the last complete version. Checkpoints load with ``weights_only=True``.

Under torchrun (:mod:`nasden.distributed`) every process runs :func:`execute`: rank 0 reads the run
folder and writes it; the others receive what it read, run the data-parallel stages with it and
receive the outcome of every other stage.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from nasden import distributed
from nasden.atomic import atomic_write, remove_orphans
from nasden.data import RunData
from nasden.dynamic import DynamicDenoiser
from nasden.errors import RunError
from nasden.extract import extract
from nasden.ops.gates import gate_from_spec
from nasden.recipe import Recipe, load_recipe
from nasden.registry import STRATEGIES
from nasden.run_lock import RunLock
from nasden.space import Architecture, SearchSpace
from nasden.strategy import StageFailed
from nasden.supernet import Supernet
from nasden.tb import open_writer, progress


def save_torch(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def _serialise(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def load_torch(path: Path) -> Any:
    """Load a checkpoint without running code from it; a truncated or foreign file is a :class:`RunError`
    (torch's own text, which advises ``weights_only=False``, is not passed on)."""
    try:
        with warnings.catch_warnings():  # torch's warnings about unsafe loading advise what nasden must not do
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - unpickling, zip and storage errors of every kind
        raise RunError(f"{path}: not a checkpoint nasden can read safely ({err.__class__.__name__}); it may be "
                       f"truncated or not written by nasden") from None


def resolve_device(name: str) -> torch.device:
    """The recipe's ``device``; under torchrun, ``auto`` and ``cuda`` mean this process's GPU (``LOCAL_RANK``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StageFailed(f"device {name!r} was asked for but CUDA is not available; use device: auto or cpu")
    if name == "cuda" and distributed.active():
        return torch.device("cuda", distributed.local_rank() % torch.cuda.device_count())
    return torch.device(name)


class RunContext:
    """What the stages of a run share: space, supernet, data, device, writer and results so far."""

    def __init__(self, recipe: Recipe, run_dir: Path, quiet: bool = False, workers: int = 1):
        self.recipe, self.run_dir, self.quiet = recipe, run_dir, quiet or not distributed.is_main()
        self.workers = workers  # local processes a stage may run its trials on (evolution)
        self.device = resolve_device(recipe.device)
        self.space: SearchSpace = recipe.build_space()
        torch.manual_seed(recipe.seed)
        self.supernet = Supernet(self.space).to(self.device)
        self.data = RunData(recipe.data, self.space.in_channels, recipe.seed)
        self.writer = open_writer(run_dir)
        self.candidates: list[dict[str, Any]] = []  # [{"arch", "flops_per_pixel", "psnr"}] from search stages
        self.arch: Architecture | None = None  # the architecture an earlier stage chose
        self.gate: nn.Module | None = None  # a routing gate an earlier stage trained (ClassPruning's classifier)
        self.gate_spec: dict[str, Any] | None = None  # what rebuilds it (gate_from_spec)
        self.final: nn.Module | None = None  # the network to deploy
        self.final_spec: dict[str, Any] | None = None  # what rebuilds it (see build_network)
        self.summaries: list[dict[str, Any]] = []

    @property
    def final_arch(self) -> Architecture | None:
        """The architecture of a static final network (None for a dynamic one)."""
        return self.final_spec.get("arch") if self.final_spec else None

    def set_final(self, model: nn.Module, spec: dict[str, Any]) -> None:
        """Make ``model`` the run's result and write ``final.pt``; ``spec`` rebuilds it (:func:`build_network`)."""
        self.final, self.final_spec = model, spec
        save_torch({"spec": spec, "state_dict": model.state_dict()}, self.run_dir / "final.pt")

    def state_dict(self) -> dict[str, Any]:
        return {
            "completed": len(self.summaries), "summaries": self.summaries, "supernet": self.supernet.state_dict(),
            "candidates": self.candidates, "arch": self.arch, "final_spec": self.final_spec,
            "final": None if self.final is None else self.final.state_dict(),
            "gate_spec": self.gate_spec, "gate": None if self.gate is None else self.gate.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.summaries = list(state["summaries"])
        self.supernet.load_state_dict(state["supernet"])
        self.candidates, self.arch, self.final_spec = state["candidates"], state["arch"], state["final_spec"]
        if state["final"] is not None:
            self.final = trained_network(self.space, self.final_spec, state["final"], self.device)
        if state.get("gate") is not None:
            self.set_gate(gate_from_spec(self.supernet, state["gate_spec"]), state["gate_spec"])
            self.gate.load_state_dict(state["gate"])

    def set_gate(self, gate: nn.Module, spec: dict[str, Any]) -> None:
        """Keep ``gate`` (rebuilt by ``spec``) for the stages that follow."""
        self.gate, self.gate_spec = gate.to(self.device), spec

    def share_from_main(self, weights: bool) -> None:
        """Under torchrun, give every process rank 0's outcome of a stage: its decisions (summaries,
        candidates, chosen architecture) and, with ``weights``, everything else (weights, final network)."""
        if not distributed.active():
            return
        if weights:  # sent as torch.save bytes, so GPU tensors arrive on the CPU, not on rank 0's GPU
            data = distributed.from_main(lambda: _serialise(self.state_dict()))
            if not distributed.is_main():
                self.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
        else:
            self.summaries, self.candidates, self.arch = distributed.from_main(
                lambda: (self.summaries, self.candidates, self.arch))


def build_network(space: SearchSpace, spec: dict[str, Any]) -> nn.Module:
    """The untrained network a final spec describes: ``{"kind": "static", "arch"}`` or
    ``{"kind": "dynamic", "archs", "flops", "gate", "cost_bias"}``."""
    supernet = Supernet(space)
    if spec["kind"] == "static":
        return extract(supernet, spec["arch"])
    gate = gate_from_spec(supernet, spec["gate"])
    return DynamicDenoiser(gate, [extract(supernet, arch) for arch in spec["archs"]], spec["flops"],
                           spec.get("cost_bias", 0.0))


def trained_network(space: SearchSpace, spec: dict[str, Any], state_dict: dict[str, Any],
                    device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a final network and load its trained weights."""
    model = build_network(space, spec)
    model.load_state_dict(state_dict)
    return model.to(device).eval()


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

    def check_loss(self, loss: torch.Tensor, step: int, last_checkpoint: int) -> None:
        """Stop the stage with a clear message if ``loss`` is NaN or infinite."""
        if not torch.isfinite(loss):
            self.fail(f"loss became {loss.item()} at step {step}", last_checkpoint)

    def fail(self, what: str, last_checkpoint: int) -> None:
        """Stop the stage, saying what went wrong, where it restarts and how to recover."""
        kept = (f"the last good checkpoint (step {last_checkpoint}) is kept in {self.dir / 'checkpoint.pt'}"
                if last_checkpoint and self.has_checkpoint() else "the stage has no checkpoint and restarts")
        raise StageFailed(f"stage {self.index} ({self.strategy}): {what}; {kept}. Lower the learning rate and "
                          f"continue: nasden resume {self.run.run_dir} -o stages.{self.index}.lr=...")


def create_run(recipe: Recipe, run_dir: Path) -> Path:
    """Make a run folder holding the resolved recipe; an existing file, run or non-empty folder is refused."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"{run_dir}: is a file; --out must name a new or empty folder")
    if (run_dir / "recipe.yaml").exists():
        raise RunError(f"{run_dir} already holds a run; continue it with `nasden resume {run_dir}`")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir}: not empty and holds no run (no recipe.yaml); choose a new --out folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"{run_dir}: cannot create the run folder ({err.strerror})") from None
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
        ctx = open_run(run_dir, quiet, workers)
        try:
            for index, stage in enumerate(ctx.recipe.stages):
                _run_stage(ctx, index, stage.strategy, stage.options)
        finally:
            ctx.writer.close()
    if not ctx.quiet:
        print(f"done: {run_dir}", file=sys.stderr)
    return ctx.summaries


def _run_stage(ctx: RunContext, index: int, name: str, options: Any) -> None:
    strategy = STRATEGIES.get(name)(options)
    stage_ctx = StageContext(ctx, index, name, strategy.data_parallel)
    if index < len(ctx.summaries):
        if not (stage_ctx.dir / "result.json").exists():
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


def load_final(run_dir: Path, device: torch.device | str = "cpu") -> tuple[SearchSpace, dict[str, Any], nn.Module]:
    """The space, the final spec and the trained final network (static or dynamic) of a run."""
    recipe = load_recipe(run_dir / "recipe.yaml")
    path = run_dir / "final.pt"
    if not path.exists():
        raise RunError(f"{run_dir}: no final network yet (final.pt); a train or gate stage writes it")
    state = load_torch(path)
    if not isinstance(state, dict) or not {"spec", "state_dict"} <= state.keys():
        raise RunError(f"{path}: not a final network written by this version of nasden; run the recipe again")
    space = recipe.build_space()
    return space, state["spec"], trained_network(space, state["spec"], state["state_dict"], device)
