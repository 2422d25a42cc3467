"""DDS-Net vs individually trained static networks (the paper's Table I at CPU scale).

Backbone: DnCNN-like, ``--depth`` layers, up to ``--channels`` channels, BN-free. Training patches
from ../shared/data/train400 with AWGN (``--sigma 25`` or ``--sigma blind`` for 0-50), model
selection (slimming, gate labels' validation) on the builtin photographs, test on Set12 and BSD68.

(a) static networks at uniform widths near 25%, 50% and 100% of the full FLOPs, each trained
    for ``--steps`` optimiser steps (L1, Adam, cosine) — as many as the supernet gets;
(b) DDS: sandwich (n=4; distill none, inplace and synergy) → progressive slimming → gates with
    budgets at the same three FLOPs levels → dynamic evaluation.
Ablation: distill none / inplace / synergy → PSNR of the smallest and largest sub-networks.
Also the gate's overhead in FLOPs and wall time relative to the smallest candidate.

    python bench/dds_vs_static.py [--steps 800] [--sigma 25] [--data ../shared/data]

Writes bench/results/dds_vs_static[_blind].json and .md.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nasden.common.registry import SPACES
from nasden.core.cost import cost, measure_latency
from nasden.deploy.model_file import load as load_final
from nasden.deploy.scoring import markdown_table
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute
from record import RESULTS, provenance

LEVELS = (0.25, 0.5, 1.0)


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """The options :func:`base` and :func:`test_stage` read: noise, backbone size, patches, data folder."""
    parser.add_argument("--sigma", default="25", help="a number, or 'blind' for 0-50")
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def base(args: argparse.Namespace, name: str, stages: list[dict]) -> dict[str, Any]:
    sigma: Any = [0, 50] if args.sigma == "blind" else float(args.sigma)
    return {
        "name": name, "seed": 0, "device": "cpu",
        "data": {"train": str(Path(args.data) / "train400"), "val": "builtin", "val_crop": 128,
                 "noise": {"kind": "gaussian", "sigma": sigma}, "patch": args.patch, "batch": args.batch},
        "space": {"name": "slimmable", "backbone": "dncnn", "depth": args.depth, "channels": args.channels,
                  "group": 8, "min_ratio": 0.2, "attention": True},
        "stages": stages,
    }


def test_stage(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    sigma = 25.0 if args.sigma == "blind" else float(args.sigma)
    sets = [str(Path(args.data) / "set12"), str(Path(args.data) / "bsd68")]
    return {"strategy": "evaluate", "sets": sets, "sigma": sigma, "latency_runs": 3, **extra}


def run(recipe: dict[str, Any], folder: Path) -> tuple[Path, list[dict]]:
    started = time.perf_counter()
    run_dir = create_run(parse_recipe(recipe, recipe["name"]), folder / recipe["name"])
    summaries = execute(run_dir, quiet=True)
    print(f"  {recipe['name']}: {time.perf_counter() - started:.0f} s", flush=True)
    return run_dir, summaries


def rows_of(group: str, model: str, summary: dict) -> list[dict]:
    return [{"group": group, "model": model, "set": Path(s["set"]).name, "flops_per_pixel": round(s["flops_per_pixel"]),
             "psnr": s["psnr"], "ssim": round(s["ssim"], 4), **({"choices": s["choices"]} if "choices" in s else {})}
            for s in summary["sets"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--gate-steps", type=int, default=300)
    add_setting_arguments(parser)
    args = parser.parse_args()
    if not (Path(args.data) / "train400").is_dir():
        raise SystemExit(f"skipped: {args.data}/train400 not found (pass --data)")
    torch.set_num_threads(torch.get_num_threads())
    space = SPACES.get("slimmable")(depth=args.depth, channels=args.channels, group=8, min_ratio=0.2)
    full = cost(space, space.largest()).flops_per_pixel
    widths = space.choices()[next(iter(space.choices()))].values
    uniform = {w: cost(space, {label: w for label in space.choices()}).flops_per_pixel for w in widths}
    folder = Path(tempfile.mkdtemp(prefix="dds_vs_static-"))
    print(f"runs in {folder}; full network {full:.0f} FLOPs/pixel", flush=True)
    table: list[dict] = []
    train = {"strategy": "train", "steps": args.steps, "loss": "mse", "lr": 1e-3, "val_every": args.steps}

    for level in LEVELS:  # (a) static networks trained individually
        width = min(uniform, key=lambda w: abs(uniform[w] - level * full))
        arch = {label: width for label in space.choices()}
        _, summaries = run(base(args, f"static-{int(level * 100)}", [{**train, "arch": arch}, test_stage(args)]),
                           folder)
        table += rows_of(f"{int(level * 100)}%", f"static, width {width}", summaries[-1])

    ablation = []
    for distill in ("none", "inplace", "synergy"):  # (b) DDS and the distillation ablation
        stages = [{"strategy": "sandwich", "n": 4, "distill": distill, "steps": args.steps, "val_every": args.steps,
                   "val_size": 96},
                  test_stage(args, network="largest"), test_stage(args, network="smallest")]
        stages.append({"strategy": "progressive_slimming", "group": 8, "val_images": 3, "val_size": 96})
        for level in LEVELS:
            stages += [{"strategy": "gate", "candidates": 4, "beta": 0.2, "budget_ratio": level,
                        "steps": args.gate_steps, "patch": 64}, test_stage(args)]
        run_dir, summaries = run(base(args, f"dds-{distill}", stages), folder)
        ablation.append({"distill": distill, **{f"{which}_{Path(s['set']).name}": s["psnr"]
                                                for which, summary in (("largest", summaries[1]),
                                                                       ("smallest", summaries[2]))
                                                for s in summary["sets"]}})
        for i, level in enumerate(LEVELS):
            table += rows_of(f"{int(level * 100)}%", f"DDS-{distill} (budget {level:.0%})", summaries[5 + 2 * i])
        if distill == "synergy":
            dds_dir = run_dir

    loaded = load_final(dds_dir)  # the last gate: measure its overhead

    spec, dynamic = loaded.spec, loaded.network
    smallest = dynamic.candidates[0]
    x = torch.rand(1, 1, 256, 256)
    gate_time, small_time = measure_latency(dynamic.gate, x, runs=30), measure_latency(smallest, x, runs=30)
    overhead = {"gate_flops_per_pixel": dynamic.gate.flops_per_pixel, "smallest_flops_per_pixel": spec["flops"][0],
                "flops_ratio": round(dynamic.gate.flops_per_pixel / spec["flops"][0], 4),
                "gate_ms": round(1000 * gate_time, 3), "smallest_ms": round(1000 * small_time, 3),
                "time_ratio": round(gate_time / small_time, 4)}

    table.sort(key=lambda row: (int(row["group"][:-1]), row["set"]))
    result = {**provenance(), "settings": vars(args), "full_flops_per_pixel": full, "table": table,
              "ablation": ablation, "gate_overhead": overhead, "runs": str(folder)}
    name = "dds_vs_static" + ("_blind" if args.sigma == "blind" else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = (f"# DDS-Net vs static networks\n\n`{result['command']}` — {result['date']}, {result['git_revision']}, "
            f"{result['machine']}\n\n{markdown_table(table)}\n## Distillation ablation (PSNR, dB)\n\n"
            f"{markdown_table(ablation)}\n## Gate overhead\n\n{markdown_table([overhead])}")
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
