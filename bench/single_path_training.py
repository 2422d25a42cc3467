"""Does a supernet train when each step runs one sampled path? (issue "MoD-NAS", the Gumbel sampling ablation.)

The supernet of bench/darts_vs_nni.py (a DnCNN of 8 layers × 32 channels, six of them choosing among conv 3×3 / 5×5,
dilated 3×3, separable 3×3 and identity; Train400 40² patches, batch 16, σ 25) trains its weights only, alpha held
uniform, as the search's warm-up does, with each way of running the choices:

- ``softmax``: the weighted sum of every candidate (DARTS, MoD-NAS);
- ``fixed``: one path, conv 3×3 everywhere, every step (a plain network);
- ``gumbel``: a Gumbel-softmax sample of the weights every step (SNAS);
- ``gumbel_hard``: one path sampled every step (GDAS; uniform alpha makes it single-path uniform sampling);
- ``gumbel_hard_two_ops``: the same with conv 3×3 / 5×5 only;

each without and (``--bn``) with BatchNorm after every searched layer. Figure: the training PSNR over the last fifth
of the steps (each step's own forward, the samples included) and the noisy patches' PSNR beside it: a supernet that
learns nothing outputs its input.

    python bench/single_path_training.py [--steps 300]

Results: bench/results/single_path_training.{json,md}.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from darts_vs_nni import OPS, SPACE, add_data_arguments, data_options

from nasden.core.relaxation import ArchParameters
from nasden.core.supernet import Supernet
from nasden.data.image_sets import DataConfig, RunData
from nasden.pipeline.recipe import build_space, convert
from nasden.strategies.darts import Search
from record import RESULTS, provenance, write_json

MODES = ("softmax", "fixed", "gumbel", "gumbel_hard", "gumbel_hard_two_ops")


def train(mode: str, bn: bool, args: argparse.Namespace) -> dict[str, float]:
    """Train the supernet's weights ``args.steps`` steps in ``mode``; PSNR of the last fifth, noisy input's beside."""
    ops = ["conv3x3", "conv5x5"] if mode == "gumbel_hard_two_ops" else OPS
    space = build_space({**SPACE, "ops": ops, "bn": bn})
    torch.manual_seed(0)
    search = Search(Supernet(space), ArchParameters(space), hard=mode == "fixed" or mode.startswith("gumbel_hard"))
    if mode == "fixed":  # hard without noise runs the most probable path: conv 3×3, alpha's first, everywhere
        with torch.no_grad():
            for alpha in search.arch.alphas.values():
                alpha[0] = 1.0
    data = RunData(convert(DataConfig, data_options(args), "data"), 1, 0)
    optimizer = torch.optim.Adam(search.supernet.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    tail, noisy_tail = [], []
    start = time.perf_counter()
    for step in range(args.steps):
        noisy, clean = data.sampler.batch(step, stream=0)
        search.noise = search.arch.gumbel_noise(generator) if mode.startswith("gumbel") else None
        loss = F.mse_loss(search.weights_forward(noisy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= args.steps * 4 // 5:
            tail.append(loss.item())
            noisy_tail.append(F.mse_loss(noisy, clean).item())
    return {"train_psnr": round(-10 * math.log10(sum(tail) / len(tail)), 2),
            "noisy_psnr": round(-10 * math.log10(sum(noisy_tail) / len(noisy_tail)), 2),
            "seconds_per_step": round((time.perf_counter() - start) / args.steps, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    add_data_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for bn in (False, True):
        for mode in MODES:
            results.setdefault(mode, {})["bn" if bn else "no_bn"] = figures = train(mode, bn, args)
            print(mode, "BN" if bn else "no BN", figures, flush=True)
            write_json("single_path_training", {"steps": args.steps, "results": results})
    p = provenance()
    lines = ["| weights trained on | no BN: training PSNR (noisy input) | with BN | s / step (no BN, BN) |",
             "|---|---|---|---|"]
    for mode, by_bn in results.items():
        plain, normed = by_bn["no_bn"], by_bn["bn"]
        lines.append(f"| {mode} | {plain['train_psnr']} ({plain['noisy_psnr']}) | {normed['train_psnr']} "
                     f"({normed['noisy_psnr']}) | {plain['seconds_per_step']}, {normed['seconds_per_step']} |")
    lines.append(f"\n{args.steps} weight steps each. Command: `{p['command']}`; {p['date']}; git {p['git_revision']}; "
                 f"{p['machine']}")
    (RESULTS / "single_path_training.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
