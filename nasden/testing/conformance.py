"""Conformance suite: what every registered strategy promises, checked on its smoke recipe in seconds.

:func:`check_strategy` checks, for one strategy:

1. ``requires``: a recipe without an earlier stage that provides each required slot is refused before
   anything runs, naming the slot;
2. every option: a value of the wrong kind, or an option the strategy does not have, is one line
   naming ``stages.N.<option>``;
3. the smoke space has one of the choice kinds the strategy declares (``space_choices``);
4. it runs straight through: a JSON-ready summary with the declared ``summary_keys``, equal to its
   ``result.json``;
5. ``provides``: every slot it declares is filled in ``context.pt`` when it ends;
6. it writes only inside its own stage folder (and ``context.pt`` / ``final.pt``), every file by atomic
   rename (TensorBoard's event files and its declared ``transactional_files`` aside), and leaves no
   temporary file;
7. determinism and resume: a second run with the same seed, interrupted right after the stage's first
   checkpoint and resumed, ends with the same summary and weights (a stage that never checkpoints
   must give the same result when run again).

:func:`check_under_torchrun` runs the smoke recipe under a 2-process torchrun: data-parallel stages
on both processes, the others on rank 0, written once. Third-party strategies run both::

    from nasden.testing.conformance import check_strategy
    def test_my_strategy(tmp_path):
        check_strategy("my_strategy", tmp_path)
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml

from nasden.common.registry import STRATEGIES
from nasden.common.storage import load_torch
from nasden.pipeline.recipe import RecipeError, parse_recipe
from nasden.pipeline.run import SLOTS, StageContext, create_run, execute


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


@contextmanager
def renamed_files() -> Iterator[set[Path]]:
    """The targets of every ``os.replace`` (the last step of an atomic write) while the block runs."""
    targets: set[Path] = set()
    original = os.replace

    def record(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        original(src, dst, *args, **kwargs)
        targets.add(Path(dst).resolve())

    os.replace = record  # type: ignore[assignment]
    try:
        yield targets
    finally:
        os.replace = original  # type: ignore[assignment]


def _outcome(run_dir: Path) -> tuple[list[dict], dict[str, torch.Tensor]]:
    context = load_torch(run_dir / "context.pt")
    results = [json.loads(p.read_text()) for p in sorted((run_dir / "stages").glob("*/result.json"))]
    final = context["final"]["state_dict"] if context["final"] else {}
    return results, context["supernet"] | {"final." + k: v for k, v in final.items()}


def without_timings(value: Any) -> Any:
    """``value`` without wall-clock measurements (keys ending in ``_ms`` or ``_seconds``), which vary."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.endswith(("_ms", "_seconds"))}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def check_requires(strategy: str) -> None:
    """A recipe in which nothing before the stage provides a slot it requires is refused, naming the slot."""
    cls = STRATEGIES.get(strategy)
    for slot in sorted(cls.requires):
        assert slot in SLOTS, f"{strategy} requires {slot!r}, which is not a run slot ({', '.join(SLOTS)})"
        recipe = toy_recipe(strategy)
        recipe["stages"] = [s for s in recipe["stages"][:-1] if slot not in STRATEGIES.get(s["strategy"]).provides] \
            + recipe["stages"][-1:]
        try:
            parse_recipe(recipe)
        except RecipeError as err:
            assert f"needs {slot}" in str(err) or slot in str(err), f"{strategy}: {err} does not name {slot}"
        else:
            raise AssertionError(f"{strategy}: a recipe with nothing providing {slot!r} was accepted")


def check_options(strategy: str) -> None:
    """Every option given a value of the wrong kind, and an unknown option, is one line naming the option."""
    cls = STRATEGIES.get(strategy)
    recipe = toy_recipe(strategy)
    index = len(recipe["stages"]) - 1
    bad_values = [(field.name, ["not", "a value"] if "dict" in str(field.type) else {"not": "a value"})
                  for field in dataclasses.fields(cls.Config)]
    for name, value in [*bad_values, ("no_such_option", 1)]:
        broken = {**recipe, "stages": [*recipe["stages"][:-1], {**recipe["stages"][-1], name: value}]}
        try:
            parse_recipe(broken)
        except RecipeError as err:
            message = str(err)
            assert "\n" not in message, f"{strategy}.{name}: the error is not one line: {message!r}"
            assert f"stages.{index}" in message and name in message, f"{strategy}.{name}: {message!r}"
        else:
            raise AssertionError(f"{strategy}: {name}={value!r} was accepted")


def check_strategy(strategy: str, tmp_path: Path) -> None:
    """Check every property in the module docstring for ``strategy``."""
    cls = STRATEGIES.get(strategy)
    check_requires(strategy)
    check_options(strategy)
    recipe = parse_recipe(toy_recipe(strategy), f"<conformance {strategy}>")
    if cls.space_choices:
        kinds = {choice.kind for choice in recipe.build_space().choices().values()}
        assert cls.space_choices & kinds, f"{strategy}: its smoke space has none of {sorted(cls.space_choices)}"

    stage = len(recipe.stages) - 1
    straight = create_run(recipe, tmp_path / "straight")
    with renamed_files() as renamed:
        summaries = execute(straight, quiet=True)
    assert len(summaries) == len(recipe.stages) and all(isinstance(s, dict) for s in summaries)
    json.dumps(summaries)  # JSON-ready
    missing = cls.summary_keys - summaries[-1].keys()
    assert not missing, f"{strategy}: the summary lacks {sorted(missing)}"
    results, weights = _outcome(straight)
    assert results == summaries
    context = load_torch(straight / "context.pt")
    for slot in cls.provides:
        assert context[slot], f"{strategy} provides {slot!r} but left it empty"
    _check_files(strategy, straight, stage, renamed)

    resumed = create_run(recipe, tmp_path / "resumed")
    with interrupt_after_first_checkpoint(stage):
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


def _check_files(strategy: str, run_dir: Path, stage: int, renamed: set[Path]) -> None:
    """Every file of the run is in its own stage folder or a run file, and was written by atomic rename."""
    own = f"{stage:02d}-{strategy}"
    for path in run_dir.rglob("*"):
        if path.is_dir() or path.parts[len(run_dir.parts)] == "tensorboard":
            continue
        relative = path.relative_to(run_dir)
        assert not path.name.startswith(".nasden-tmp-"), f"{strategy} left a temporary file: {relative}"
        in_stage = relative.parts[:2] == ("stages", own)
        before = relative.parts[0] == "stages" and relative.parts[1] < own
        assert in_stage or before or str(relative) in ("recipe.yaml", "data.json", "context.pt", "final.pt"), \
            f"{strategy} wrote {relative} outside its stage folder"
        if relative.name in STRATEGIES.get(strategy).transactional_files:
            continue
        if in_stage or relative.name in ("context.pt", "final.pt"):
            assert path.resolve() in renamed, f"{strategy} wrote {relative} in place, not by atomic rename"


def _worker_logs(folder: Path, tail: int = 3000) -> str:
    """The end of each torchrun worker's output (``--log-dir`` ``--redirects 3``): where a process that
    aborted says why, which torchrun's own error report leaves out."""
    return "".join(f"\n--- {path.relative_to(folder)}:\n{path.read_text(errors='replace')[-tail:]}"
                   for path in sorted(folder.rglob("*.log")) if path.stat().st_size)


def check_under_torchrun(strategy: str, tmp_path: Path, timeout: float = 240) -> None:
    """Run the smoke recipe under ``torchrun --nproc_per_node 2`` (gloo): it ends on both processes, rank 0
    writes the run once, and a stage that runs on rank 0 alone gives what one process gives."""
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(toy_recipe(strategy)))
    out, logs = tmp_path / "torchrun", tmp_path / "torchrun-logs"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--log-dir", str(logs), "--redirects", "3",
               "-m", "nasden.cli", "search", str(recipe_file), "--out", str(out), "--quiet"]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{strategy} under torchrun: {done.stderr[-2000:]}{_worker_logs(logs)}"
    assert len(list((out / "tensorboard").iterdir())) == 1, f"{strategy}: more than rank 0 wrote TensorBoard"
    if not any(STRATEGIES.get(stage["strategy"]).data_parallel for stage in toy_recipe(strategy)["stages"]):
        single = tmp_path / "single"
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as each torchrun process: the same kernels, the same rounding
        try:
            execute(create_run(parse_recipe(toy_recipe(strategy)), single), quiet=True)
        finally:
            torch.set_num_threads(threads)
        a, b = _outcome(out), _outcome(single)
        assert without_timings(a[0]) == without_timings(b[0]), f"{strategy}: rank 0 alone differs from one process"
