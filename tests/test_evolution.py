"""Optuna evolutionary search: samplers, constraints, Pareto front, composition with the gate, workers."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState, create_trial

from nasden.cli import main
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import StageContext, create_run, execute, open_run
from nasden.strategies.evolution import EvolutionConfig, make_sampler, open_study, pareto_front

TINY = {
    "name": "evo", "seed": 2, "device": "cpu",
    "data": {"patch": 16, "batch": 2, "val_images": 1, "val_crop": 48, "noise": {"sigma": [0, 50]}},
    "space": {"name": "slimmable", "depth": 4, "channels": 16},
    "stages": [{"strategy": "sandwich", "steps": 3, "val_size": 32},
               {"strategy": "evolution", "trials": 10, "val_images": 1, "val_size": 32,
                "sampler_options": {"population_size": 4}}],
}


@pytest.mark.parametrize("name, cls", [("nsga2", "NSGAIISampler"), ("nsga3", "NSGAIIISampler"),
                                       ("tpe", "TPESampler"), ("random", "RandomSampler"), ("gp", "GPSampler")])
def test_sampler_by_name(name: str, cls: str) -> None:
    assert type(make_sampler(EvolutionConfig(sampler=name), seed=0)).__name__ == cls


def test_bad_sampler_options_and_constraints_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="sampler_options for nsga2"):
        make_sampler(EvolutionConfig(sampler_options={"populaton_size": 4}), seed=0)
    with pytest.raises(ValueError, match="takes no constraints"):
        EvolutionConfig(sampler="random", max_flops=1e5)
    with pytest.raises(ValueError, match="latency: true"):
        EvolutionConfig(max_latency_ms=5)


def _trial(psnr: float, flops: float, constraints: tuple[float, ...] = ()):
    return create_trial(values=[psnr, flops], params={}, distributions={},
                        constraints={f"limit{i}": c for i, c in enumerate(constraints)})


def test_pareto_front_by_hand() -> None:
    trials = [_trial(28.0, 100), _trial(27.0, 50), _trial(27.5, 120), _trial(29.0, 200), _trial(30.0, 150, (1.0,)),
              _trial(26.0, 50)]
    front = pareto_front(trials)
    assert [(t.values[0], t.values[1]) for t in front] == [(27.0, 50), (28.0, 100), (29.0, 200)]


def test_evolution_then_gate_composes(tmp_path) -> None:
    recipe = {**TINY, "stages": [*TINY["stages"][:1],
                                 {**TINY["stages"][1], "max_flops": 4000.0},
                                 {"strategy": "gate", "candidates": 2, "steps": 3}]}
    run = create_run(parse_recipe(recipe), tmp_path / "run")
    summaries = execute(run, quiet=True)
    evolution = summaries[1]
    assert evolution["trials"] == 10 and evolution["front"]
    assert all(entry["flops_per_pixel"] <= 4000.0 for entry in evolution["front"])
    flops = [entry["flops_per_pixel"] for entry in evolution["front"]]
    assert flops == sorted(flops)
    stage = run / "stages" / "01-evolution"
    assert (stage / "pareto.png").stat().st_size > 1000
    assert len(json.loads((stage / "pareto.json").read_text())) == len(evolution["front"])
    assert len(summaries[2]["candidates"]) == 2  # the gate routes over the Pareto front


def test_the_smallest_and_largest_architectures_are_scored_first(tmp_path) -> None:
    run = create_run(parse_recipe(TINY), tmp_path / "run")
    summaries = execute(run, quiet=True)
    ctx = open_run(run, quiet=True)
    study = open_study(StageContext(ctx, 1, "evolution"), ctx.recipe.stages[1].options, 0)
    first = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)[:2]
    assert [t.user_attrs["arch"] for t in first] == [ctx.space.smallest(), ctx.space.largest()]
    assert summaries[1]["trials"] == 10
    assert summaries[1]["front"][0]["flops_per_pixel"] == first[0].values[1]  # the front starts at the smallest


@pytest.mark.slow
def test_two_local_workers_share_one_sqlite_study(tmp_path) -> None:
    path = tmp_path / "evo.yaml"
    slow = {"name": "slimmable", "depth": 17, "channels": 64}  # trials slow enough for the helper to start and join
    data = {**TINY["data"], "val_crop": 96}
    path.write_text(yaml.safe_dump({**TINY, "data": data, "space": slow, "stages": [{**TINY["stages"][1], "trials": 60,
                                                                        "val_size": 96}]}))
    run = tmp_path / "run"
    assert main(["search", str(path), "--out", str(run), "--quiet", "--workers", "2"]) == 0
    ctx = open_run(run)
    study = open_study(StageContext(ctx, 0, "evolution"), ctx.recipe.stages[0].options, 0)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) >= 60
    assert {t.user_attrs["worker"] for t in done} == {0, 1}
    assert len({t.number for t in done}) == len(done)
    assert json.loads((run / "stages" / "00-evolution" / "result.json").read_text())["trials"] == 60


def _running_trial_being_scored(db: Path, labels: int) -> int | None:
    """The number of a running trial with a recorded heartbeat (only such a trial can go stale) and its whole
    architecture suggested (it is being scored), if any."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db) as connection:
            row = connection.execute(
                "SELECT t.number FROM trials t JOIN trial_heartbeats h ON h.trial_id = t.trial_id WHERE t.state = "
                "'RUNNING' AND (SELECT COUNT(*) FROM trial_params p WHERE p.trial_id = t.trial_id) = ?",
                (labels,)).fetchone()
    except sqlite3.OperationalError:  # the worker is still creating the tables
        return None
    return None if row is None else row[0]


@pytest.mark.slow
def test_a_killed_workers_trial_is_retried_not_counted_twice(tmp_path) -> None:
    evolution = {**TINY["stages"][1], "trials": 5, "heartbeat_seconds": 1, "val_size": 128}
    recipe = {**TINY, "data": {**TINY["data"], "val_crop": 128}, "space": {"name": "slimmable", "depth": 17,
                                                                          "channels": 64}, "stages": [evolution]}
    run = tmp_path / "run"
    create_run(parse_recipe(recipe), run)
    worker = subprocess.Popen([sys.executable, "-m", "nasden.cli", "worker", str(run), "--stage", "0", "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctx = open_run(run, quiet=True)
    stage = StageContext(ctx, 0, "evolution")
    deadline = time.time() + 120
    lost = None
    while lost is None and worker.poll() is None and time.time() < deadline:
        time.sleep(0.02)
        lost = _running_trial_being_scored(stage.dir / "study.db", len(ctx.space.choices()))
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert lost is not None, "the worker finished before it could be killed"
    study = open_study(stage, ctx.recipe.stages[0].options, 0)
    assert study.trials[lost].state == TrialState.RUNNING, "the trial ended before the kill landed"
    time.sleep(2.5)  # past the grace period: the trial's heartbeat is stale
    summaries = execute(run, quiet=True)
    study = open_study(stage, ctx.recipe.stages[0].options, 0)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.number for t in failed] == [lost]
    retried = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.system_attrs.get("failed_trial") == lost]
    assert len(retried) == 1 and retried[0].params == failed[0].params  # the same architecture again
    assert summaries[0]["trials"] == 5 and summaries[0]["failed_trials"] == 1
