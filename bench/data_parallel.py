"""Data-parallel sandwich training: one process with batch 2B against ``torchrun`` with 2 processes of batch B.

All runs train the same slimmable supernet on the same patches (the two processes' shares make up the
one process's batch), so they differ only in float rounding; a one-process run with another thread
count shows how far rounding alone moves the weights. Figures: wall time of the whole command
(start-up included), the weights' relative difference to the first run, validation PSNR.

    cd bench && python data_parallel.py --steps 300
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from nasden.common.storage import load_torch
from nasden.deploy.scoring import markdown_table
from record import write_report


def recipe(steps: int, batch: int) -> dict:
    return {
        "name": "data_parallel", "seed": 0, "device": "cpu",
        "data": {"noise": {"sigma": [0, 50]}, "patch": 40, "batch": batch, "val_crop": 192},
        "space": {"name": "slimmable", "backbone": "dncnn", "depth": 8, "channels": 32, "group": 8, "min_ratio": 0.2},
        "stages": [{"strategy": "sandwich", "n": 4, "steps": steps, "val_every": steps, "val_size": 96,
                    "checkpoint_every": steps}],
    }


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16, help="per process")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    k = args.processes
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, batch in (("one", k * args.batch), ("many", args.batch)):
            (root / f"{name}.yaml").write_text(yaml.safe_dump(recipe(args.steps, batch)))
        cli = ["-m", "nasden.cli", "search"]
        runs = {  # name: (command, threads per process)
            f"1 process, batch {k * args.batch}, {k} threads": ([sys.executable, *cli, str(root / "one.yaml")], k),
            f"1 process, batch {k * args.batch}, 1 thread (rounding control)": (
                [sys.executable, *cli, str(root / "one.yaml")], 1),
            f"torchrun, {k} processes × batch {args.batch}, 1 thread each": (
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(k), *cli,
                 str(root / "many.yaml")], 1),
        }
        seconds, states = [], []
        for i, (command, threads) in enumerate(runs.values()):
            seconds.append(timed([*command, "--out", str(root / str(i)), "--quiet"],
                                 {"OMP_NUM_THREADS": str(threads)}))
            states.append(load_torch(root / str(i) / "context.pt"))
    flat = [torch.cat([t.float().flatten() for t in s["supernet"].values()]) for s in states]
    rows = [{"run": name, "wall s": round(sec, 1),
             "val PSNR largest (dB)": state["summaries"][0]["val_psnr_largest"],
             "val PSNR smallest (dB)": state["summaries"][0]["val_psnr_smallest"],
             "weights vs the first, relative": f"{((f - flat[0]).norm() / flat[0].norm()).item():.2e}"}
            for name, sec, state, f in zip(runs, seconds, states, flat)]
    speedup = seconds[0] / seconds[2]
    text = write_report(
        "data_parallel",
        {"settings": vars(args), "cpu_cores": os.cpu_count(), "rows": rows, "speedup": round(speedup, 3)},
        "Data-parallel sandwich training (torchrun) vs one process",
        f"Slimmable 8 × 32 DnCNN, {args.steps} sandwich steps (n = 4), wall time of the whole command (start-up "
        f"included). The three runs see the same patches; they differ only in float rounding, which training "
        f"amplifies (the second row shows how much from a change of thread count alone).\n\n{markdown_table(rows)}"
        f"\nSpeed-up of torchrun over one process with {k} threads: {speedup:.2f}×.\n")
    print(text)

if __name__ == "__main__":
    main()
