"""Progressive slimming vs evolutionary search on the same trained supernet, at the same number of evaluations.

One slimmable DnCNN-like supernet is trained with the sandwich rule (``--steps``); copies of that run
then continue with ``progressive_slimming`` (DDS-Net's greedy search; E evaluations) and with
``evolution`` (NSGA-II and random sampling, E trials each). Each front is scored by its hypervolume in
(PSNR, FLOPs/pixel) with a fixed reference point (``--ref-psnr`` dB, the largest network's FLOPs),
on the same validation batch. Also the wall time of each search.

    python bench/evolution_vs_slimming.py [--steps 600] [--depth 8] [--channels 32]

Writes bench/results/evolution_vs_slimming.json and .md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from nasden.common.registry import SPACES
from nasden.core.cost import cost
from nasden.deploy.scoring import markdown_table
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute
from record import write_report


def hypervolume(points: list[tuple[float, float]], ref_flops: float, ref_psnr: float) -> float:
    """Area dominated by (FLOPs, PSNR) points (FLOPs minimised, PSNR maximised) up to the reference point,
    in dB × FLOPs/pixel."""
    inside = [(f, p) for f, p in points if f <= ref_flops and p > ref_psnr]
    area, level = 0.0, ref_psnr
    for psnr in sorted({p for _, p in inside}):
        cheapest = min(f for f, p in inside if p >= psnr)  # the cheapest point at least this good
        area += (psnr - level) * (ref_flops - cheapest)
        level = psnr
    return area


def continue_run(base: Path, target: Path, stage: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Copy the trained run and add one stage; returns its summary and wall time."""
    shutil.copytree(base, target)
    recipe = yaml.safe_load((target / "recipe.yaml").read_text())
    recipe["stages"].append(stage)
    (target / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    started = time.perf_counter()
    summaries = execute(target, quiet=True)
    return summaries[-1], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--val-images", type=int, default=3)
    parser.add_argument("--val-size", type=int, default=96)
    parser.add_argument("--ref-psnr", type=float, default=20.0)
    args = parser.parse_args()
    space = {"name": "slimmable", "backbone": "dncnn", "depth": args.depth, "channels": args.channels, "group": 8}
    recipe = {"name": "supernet", "seed": 0, "device": "cpu",
              "data": {"train": "builtin", "val": "builtin", "noise": {"sigma": [0, 50]}, "patch": 40, "batch": 16},
              "space": space, "stages": [{"strategy": "sandwich", "steps": args.steps, "val_every": args.steps}]}
    scoring = {"val_images": args.val_images, "val_size": args.val_size}
    supernet_space = SPACES.get("slimmable")(**{k: v for k, v in space.items() if k != "name"})
    ref_flops = cost(supernet_space, supernet_space.largest()).flops_per_pixel
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        base = create_run(parse_recipe(recipe, "supernet"), Path(folder) / "supernet")
        execute(base, quiet=True)
        slimming, seconds = continue_run(base, Path(folder) / "slimming",
                                         {"strategy": "progressive_slimming", "group": 8, **scoring})
        routing = json.loads((Path(folder) / "slimming" / "stages" / "01-progressive_slimming" /
                              "routing_space.json").read_text())
        budget = slimming["evaluations"]
        rows.append({"search": "progressive slimming", "evaluations": budget, "front size": len(routing),
                     "hypervolume": hypervolume([(e["flops_per_pixel"], e["psnr"]) for e in routing], ref_flops,
                                                args.ref_psnr), "seconds": round(seconds, 1)})
        for sampler in ("nsga2", "random"):
            options = {"population_size": 20} if sampler == "nsga2" else {}
            result, seconds = continue_run(base, Path(folder) / sampler,
                                           {"strategy": "evolution", "trials": budget, "sampler": sampler,
                                            "sampler_options": options, **scoring})
            front = [(e["flops_per_pixel"], e["psnr"]) for e in result["front"]]
            rows.append({"search": f"evolution ({sampler})", "evaluations": result["trials"],
                         "front size": len(front), "hypervolume": hypervolume(front, ref_flops, args.ref_psnr),
                         "seconds": round(seconds, 1)})
            print(rows[-1], flush=True)
    for row in rows:
        row["hypervolume / slimming"] = round(row["hypervolume"] / rows[0]["hypervolume"], 4)
    text = write_report("evolution_vs_slimming", {"settings": vars(args), "ref_flops": ref_flops, "rows": rows},
                        "Evolution vs progressive slimming (same supernet, same evaluations)",
                        f"Reference point: {args.ref_psnr} dB, {ref_flops:.4g} FLOPs/pixel (the largest network)."
                        f"\n\n{markdown_table(rows)}")
    print(text)


if __name__ == "__main__":
    main()
