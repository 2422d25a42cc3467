"""ClassPruning vs the dense network at CPU scale, with the paper's two ablations (its Tables 1 and 4).

Base network: DnCNN-like, ``--depth`` layers, ``--channels`` channels, with BatchNorm. Training
patches from ../shared/data/train400 with blind AWGN drawn from sigma 15/25/50; test on BSD68 at
each sigma. Every model gets the same restoration-training budget, ``--steps`` optimiser steps (L1,
Adam, cosine): the dense net in one ``train`` stage; ClassPruning as ``branch_train`` (2/3 of the
steps) + ``joint_finetune`` (1/3), after a ``classifier_pretrain`` of ``--classifier-steps``. Each
ClassPruning step runs all three branches, so it costs about three dense steps of compute.

Models: dense (and "dense_batch3x", three times the batch: the compute of "masked_routed_batch3x"
below); ClassPruning (variable BN, SR-STE); ablations "vBN → BN" (one BatchNorm shared by
the branches) and "SR-STE → STE"; "SR-STE → masked" (a sparse branch's gradient reaches only the
weights it keeps, what the paper calls STE); and, not in the paper: "dense_warmup" (the first half of
``branch_train`` trains the dense branch alone on every image, the sparse branches join after),
"uniform_mix" (``branch_train`` weighs every branch's L1 equally on every image, ``uniform_mix: 1``;
``joint_finetune`` as the paper) and "uniform_mix_joint" (the same, and ``uniform_mix: 0.5`` in
``joint_finetune``), "masked_routed" (masked gradients, and the image-branch pairs that weigh under 1%
are not run: ``skip_below: 0.01``) and "masked_routed_batch3x" (that with three times the batch in
stages 2-3, so that each branch, which a confident classifier gives a third of the images, sees as
many per step as the dense network does).
Reported: PSNR per sigma, average FLOPs/pixel as the paper counts them (dense × N/M for sparse
layers, classifier included) and % of dense, parameters, branch shares, each branch's PSNR alone at
every sigma, and the measured CPU wall time of each extracted branch (masked weights run as dense
convolutions on a CPU: no speed-up is expected or claimed).

    python bench/nm_branches.py [--steps 1500] [--depth 10] [--channels 32] [--data ../shared/data]

Writes bench/results/nm_branches.json and .md (``--out`` names another report).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nasden.core.cost import cost, measure_latency
from nasden.core.specs import is_dynamic
from nasden.data.image_sets import evaluation_pairs, load_set
from nasden.data.noise import NoiseConfig
from nasden.deploy.model_file import describe
from nasden.deploy.model_file import load as load_final
from nasden.deploy.scoring import evaluate_network, markdown_table, score
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute
from record import write_report

SIGMAS = (15, 25, 50)
ROUTED = {"skip_below": 0.01}


def recipe(args: argparse.Namespace, name: str, space: dict[str, Any], stages: list[dict]) -> dict[str, Any]:
    return {
        "name": name, "seed": args.seed, "device": "cpu",
        "data": {"train": str(Path(args.data) / "train400"), "val": "builtin", "val_crop": 128, "val_images": 2,
                 "noise": {"kind": "gaussian", "levels": list(SIGMAS)}, "patch": args.patch, "batch": args.batch},
        "space": space, "stages": stages,
    }


def class_pruning_stages(args: argparse.Namespace, gradient: str = "sr_ste", branch: dict[str, Any] | None = None,
                         joint: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The three stages; ``branch`` and ``joint`` add options to stages 2 and 3."""
    branch_steps = 2 * args.steps // 3
    return [
        {"strategy": "classifier_pretrain", "steps": args.classifier_steps, "lr": 1e-3, "lr_min": 1e-6,
         "channels": 32, "pool_batches": 32},
        {"strategy": "branch_train", "steps": branch_steps, "lr": args.lr, "lr_min": args.lr / 100,
         "gradient": gradient, "val_every": branch_steps, **(branch or {})},
        {"strategy": "joint_finetune", "steps": args.steps - branch_steps, "lr": args.lr / 10,
         "lr_min": args.lr / 1000, "gradient": gradient, "val_every": args.steps - branch_steps, **(joint or {})},
    ]


def models(args: argparse.Namespace) -> dict[str, tuple[dict, list[dict]]]:
    base = {"depth": args.depth, "channels": args.channels, "bn": True}
    nm = {"name": "nm_branches", **base}
    dense = {"strategy": "train", "steps": args.steps, "lr": args.lr, "lr_min": args.lr / 1000, "loss": "l1",
             "val_every": args.steps}
    return {
        "dense": ({"name": "dncnn", **base}, [dense]),
        # the dense net at the compute of a ClassPruning step that runs each image through one branch of 3x the batch
        "dense_batch3x": ({"name": "dncnn", **base}, [{**dense, "batch": 3 * args.batch}]),
        "classpruning": (nm, class_pruning_stages(args)),
        "vbn_to_bn": ({**nm, "variable_bn": False}, class_pruning_stages(args)),
        "srste_to_ste": (nm, class_pruning_stages(args, "ste")),
        # the sparse branches' gradients reach only the weights they keep: do they pull less on the dense branch?
        "srste_to_masked": (nm, class_pruning_stages(args, "masked")),
        # the sparse branches join after half of stage 2: do they pull less on the weights the dense branch shares?
        "dense_warmup": (nm, class_pruning_stages(args, branch={"dense_warmup": 0.5})),
        # a confident classifier gives each branch a third of the images: do the branches gain from all of them?
        "uniform_mix": (nm, class_pruning_stages(args, branch={"uniform_mix": 1.0})),
        "uniform_mix_joint": (nm, class_pruning_stages(args, branch={"uniform_mix": 1.0}, joint={"uniform_mix": 0.5})),
        # masked gradients; image-branch pairs weighing under 1% not run (about a third of the compute per step)
        "masked_routed": (nm, class_pruning_stages(args, "masked", ROUTED, ROUTED)),
        # ... which buys three times the batch at about the compute of the paper's training
        "masked_routed_batch3x": (nm, class_pruning_stages(args, "masked", {**ROUTED, "batch": 3 * args.batch},
                                                           {**ROUTED, "batch": 3 * args.batch})),
    }


def evaluate(run_dir: Path, args: argparse.Namespace, test: Any) -> dict[str, Any]:
    loaded = load_final(run_dir)
    space, spec, model = loaded.space, loaded.spec, loaded.network
    row: dict[str, Any] = {}
    for sigma in SIGMAS:
        pairs = evaluation_pairs(test, NoiseConfig(sigma=sigma), seed=0, crop=args.crop)
        scores = evaluate_network(model, space, spec, pairs, f"bsd68-{sigma}")
        row[f"psnr_{sigma}"] = scores["psnr"]
        if is_dynamic(model):
            row[f"shares_{sigma}"] = scores["shares"]
            row[f"flops_{sigma}"] = scores["flops_per_pixel"]
            row[f"branch_psnr_{sigma}"] = [round(score(c, pairs, "branch").psnr, 3) for c in model.candidates]
    example = torch.rand(1, 1, 321, 481)
    if is_dynamic(model):
        flops = [row[f"flops_{s}"] for s in SIGMAS]
        row["flops_per_pixel"] = sum(flops) / len(flops)
        # the shared weights, every branch's BatchNorm (variable BN) and the classifier, as final.pt stores them
        row["params"] = describe(model, space, spec)["params"]
        row["branch_flops_per_pixel"] = model.flops
        row["gate_flops_per_pixel"] = model.gate_flops
        row["branch_latency_ms"] = [round(1000 * measure_latency(c, example, runs=5), 1) for c in model.candidates]
    else:
        c = cost(space, spec["arch"])
        row["flops_per_pixel"], row["params"] = c.flops_per_pixel, c.params
        row["latency_ms"] = round(1000 * measure_latency(model, example, runs=5), 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--classifier-steps", type=int, default=300)
    parser.add_argument("--depth", type=int, default=10)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="training seed (initial weights, patches, noise)")
    parser.add_argument("--crop", type=int, help="centre-crop the BSD68 images (default: whole images)")
    parser.add_argument("--only", nargs="*", help="train only these models (default: all)")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="nm_branches", help="report name under bench/results (.json, .md)")
    args = parser.parse_args()
    test = load_set(str(Path(args.data) / "bsd68"), 1, "val")
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (space, stages) in models(args).items():
            if args.only and name not in args.only:
                continue
            started = time.perf_counter()
            run_dir = create_run(parse_recipe(recipe(args, name, space, stages), name), Path(folder) / name)
            summaries = execute(run_dir, quiet=True)
            train_seconds = time.perf_counter() - started
            rows[name] = {"train_seconds": round(train_seconds), **evaluate(run_dir, args, test)}
            if name != "dense":
                rows[name]["stage_summaries"] = summaries
            print(name, json.dumps({k: v for k, v in rows[name].items() if k != "stage_summaries"}), flush=True)
    dense = rows.get("dense")
    table = []
    for name, row in rows.items():
        entry = {"model": name, **{f"PSNR σ{s}": row[f"psnr_{s}"] for s in SIGMAS},
                 "FLOPs/px": row["flops_per_pixel"], "params": row["params"]}
        if dense:
            entry["% dense FLOPs"] = round(100 * row["flops_per_pixel"] / dense["flops_per_pixel"], 1)
            entry["ΔPSNR (mean)"] = round(sum(row[f"psnr_{s}"] - dense[f"psnr_{s}"] for s in SIGMAS) / 3, 3)
        entry["shares 1:4/2:4/4:4 at σ15; σ25; σ50"] = "; ".join(
            "/".join(f"{v:.2f}" for v in row[f"shares_{s}"]) for s in SIGMAS) if f"shares_{SIGMAS[0]}" in row else "-"
        entry["train s"] = row["train_seconds"]
        table.append(entry)
    speed = [f"- {name}: wall time per 321×481 image, branches 1:4/2:4/4:4 = {row['branch_latency_ms']} ms"
             for name, row in rows.items() if "branch_latency_ms" in row]
    if dense:
        speed.append(f"- dense: {dense['latency_ms']} ms")
    alone = [f"- {name}: " + "; ".join(f"σ{s} {row[f'branch_psnr_{s}']}" for s in SIGMAS)
             for name, row in rows.items() if f"branch_psnr_{SIGMAS[0]}" in row]
    text = write_report(args.out, {"settings": vars(args), "models": rows}, "ClassPruning vs dense (CPU scale)",
                        f"{markdown_table(table)}\nEach branch alone (1:4 / 2:4 / 4:4) on every image:\n\n"
                        + "\n".join(alone) + "\n\nMeasured CPU wall time (no sparse kernels: masked weights run as "
                        "dense convolutions, so no speed-up is measured):\n\n" + "\n".join(speed) + "\n")
    print(text)


if __name__ == "__main__":
    main()
