"""Data-parallel stages under torchrun: 2 CPU processes (gloo) against one process with the doubled batch."""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from nasden.common import distributed
from nasden.common.atomic import TEMP_PREFIX
from nasden.common.registry import STRATEGIES
from nasden.common.storage import load_torch
from nasden.data.image_sets import PatchSampler, load_set
from nasden.data.noise import NoiseConfig
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import StageContext, create_run, open_run

BATCH = 4  # per process
RECIPE = {
    "name": "ddp", "seed": 3, "device": "cpu",
    "data": {"patch": 16, "batch": BATCH, "val_images": 1, "val_crop": 48, "noise": {"sigma": [0, 50]}},
    "space": {"name": "slimmable", "backbone": "dncnn", "depth": 3, "channels": 8, "group": 2, "min_ratio": 0.25},
    "stages": [
        {"strategy": "sandwich", "steps": 5, "n": 3, "checkpoint_every": 5, "val_every": 5, "val_size": 32},
        {"strategy": "darts", "steps": 5, "warmup": 2, "log_every": 5, "val_every": 5, "checkpoint_every": 5,
         "val_size": 32},
        {"strategy": "train", "arch": "largest", "init": "supernet", "steps": 4, "checkpoint_every": 4,
         "val_every": 4},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_stages(run_dir: Path, out: Path, rank: int) -> None:
    """Run every stage of the run as a data-parallel stage and save this process's weights after each."""
    ctx = open_run(run_dir, quiet=True)
    for index, stage in enumerate(ctx.recipe.stages):
        STRATEGIES.get(stage.strategy)(stage.options).run(StageContext(ctx, index, stage.strategy, True))
        weights = {"supernet": ctx.supernet.state_dict(), "arch": ctx.arch}
        if ctx.final is not None:
            weights["final"] = ctx.final.state_dict()
        torch.save(weights, out / f"stage{index}-rank{rank}.pt")


def process(rank: int, port: int, run_dir: Path, out: Path) -> None:
    """One of two processes, with the environment torchrun would give it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    with distributed.process_group() as joined:
        assert joined and distributed.shard() == (rank, 2)
        run_stages(run_dir, out, rank)


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=atol, rtol=0), \
            (name, (a[name].float() - b[name].float()).abs().max().item())


def relative_difference(a: dict, b: dict) -> float:
    """|a - b| / |a| over all tensors of two state dicts."""
    flat_a, flat_b = (torch.cat([t.float().flatten() for t in state.values()]) for state in (a, b))
    return ((flat_a - flat_b).norm() / flat_a.norm()).item()


def test_shards_of_a_batch_make_the_batch_of_one_process() -> None:
    sampler = PatchSampler(load_set("builtin", 1), NoiseConfig(sigma=[0, 50]), 16, BATCH, seed=1)
    noisy, clean = sampler.batch(7, 2 * BATCH, stream=3)
    parts = [sampler.batch(7, BATCH, stream=3, shard=(i, 2)) for i in range(2)]
    assert torch.equal(torch.cat([p[0] for p in parts]), noisy)
    assert torch.equal(torch.cat([p[1] for p in parts]), clean)


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_doubled_batch(tmp_path) -> None:
    """sandwich → darts → train on 2 gloo processes: the weights are identical on both ranks after
    every stage and match one process with the doubled batch: within float rounding for sandwich;
    within 0.5% for darts (its log-MSE architecture loss is not a mean over samples, so the mean of
    the processes' gradients differs from the whole batch's a little) and train after it (Adam
    turns rounding in near-zero gradients into whole steps)."""
    run = create_run(parse_recipe(RECIPE), tmp_path / "two")
    out = tmp_path / "weights"
    out.mkdir()
    mp.start_processes(process, args=(free_port(), run, out), nprocs=2, start_method="spawn")
    single = copy.deepcopy(RECIPE)
    single["data"]["batch"] = 2 * BATCH
    reference = create_run(parse_recipe(single), tmp_path / "one")
    run_stages(reference, out, rank=-1)
    for index in range(len(RECIPE["stages"])):
        ranks = [torch.load(out / f"stage{index}-rank{r}.pt") for r in (0, 1)]
        one = torch.load(out / f"stage{index}-rank-1.pt")
        for part in ranks[0]:
            if part == "arch":
                assert ranks[0]["arch"] == ranks[1]["arch"] == one["arch"]
                continue
            assert_close(ranks[0][part], ranks[1][part], atol=0)  # bit for bit on both ranks
            assert relative_difference(one[part], ranks[0][part]) < 5e-3
            if index == 0:
                assert_close(ranks[0][part], one[part], atol=1e-6)
    assert load_torch(run / "stages/02-train/checkpoint.pt")["processes"] == 2
    assert not list(run.rglob(f"{TEMP_PREFIX}*"))  # no stray temporary files


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
CLI_RECIPE = {**RECIPE, "stages": [
    {"strategy": "sandwich", "steps": 100, "n": 3, "checkpoint_every": 2, "val_every": 100, "val_size": 32},
    {"strategy": "progressive_slimming", "group": 2, "val_images": 1, "val_size": 32},
    {"strategy": "train", "arch": "smallest", "init": "supernet", "steps": 4, "checkpoint_every": 2, "val_every": 4},
    {"strategy": "gate", "candidates": 2, "steps": 4, "checkpoint_every": 2, "patch": 32},
]}


def torchrun(*args: str) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*TORCHRUN, "-m", "nasden.cli", *args], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun's workers (each in a session of its own), then torchrun."""
    for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
        os.kill(int(pid), signal.SIGKILL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    return output


@pytest.mark.slow
def test_torchrun_search_writes_once_and_resumes_after_a_kill(tmp_path) -> None:
    recipe = tmp_path / "ddp.yaml"
    recipe.write_text(yaml.safe_dump(CLI_RECIPE))
    whole = tmp_path / "whole"
    finish(torchrun("search", str(recipe), "--out", str(whole), "--quiet"))
    assert len(list((whole / "tensorboard").iterdir())) == 1  # rank 0's events only
    sandwich = json.loads((whole / "stages/00-sandwich/result.json").read_text())
    slimming = json.loads((whole / "stages/01-progressive_slimming/result.json").read_text())
    assert sandwich["steps"] == 100 and slimming["architectures"] == 7

    killed = tmp_path / "killed"  # kill every process once the first checkpoint is written
    proc = torchrun("search", str(recipe), "--out", str(killed), "--quiet")
    checkpoint = killed / "stages/00-sandwich/checkpoint.pt"
    deadline = time.time() + 180
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    kill_job(proc)
    assert load_torch(checkpoint)["step"] < 100
    finish(torchrun("resume", str(killed), "--quiet"))
    a, b = load_torch(whole / "context.pt"), load_torch(killed / "context.pt")
    assert_close(a["supernet"], b["supernet"], atol=0)
    assert a["candidates"] == b["candidates"] and a["final"]["spec"] == b["final"]["spec"]
    assert a["final"]["spec"]["kind"] == "dynamic"
    assert_close(a["final"]["state_dict"], b["final"]["state_dict"], atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["search", "resume"])
def test_a_user_error_under_torchrun_is_one_line(tmp_path, command) -> None:
    target = str(tmp_path / "missing.yaml") if command == "search" else str(tmp_path)
    proc = torchrun(command, target, "--quiet")
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode != 0 and "nasden: error:" in output
