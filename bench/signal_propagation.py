"""Does a DARTS supernet pass its signal to its coarse levels, and do their architecture parameters get gradients?

The frontier's growth space (MoD-NAS's U-Net, 16/32/64 channels by level) at uniform architecture parameters, on
Train400 patches at σ 25, after the weights' warm-up (``--warmup`` Adam steps, as the frontier's short search
takes; He's initialisation starts the tail at zero, where no gradient passes yet): per layer the standard deviation
of its output, and per op and input choice the norm of the architecture gradient of the search's loss (log MSE).
Four supernets: PyTorch's default initialisation or He's (``darts: {weight_init}``), each with the plain weighted
sum of the candidates or the sum divided by the weights' L2 norm (``darts: {mixing: rms}``). Adam's ε (1e-8) is the
line: a gradient far under it moves its alpha by ~lr × gradient / ε per step, i.e. not at all.

    python bench/signal_propagation.py [--seeds 2] [--warmup 16]
"""
from __future__ import annotations

import argparse
import statistics

import torch
from frontier import BATCH, DATA, MOD_NAS_GROWTH_SPACE, PATCH

from nasden.core.initialisation import initialise
from nasden.core.relaxation import ArchParameters
from nasden.core.supernet import Supernet
from nasden.data.image_sets import PatchSampler, load_set
from nasden.data.noise import NoiseConfig
from nasden.pipeline.recipe import build_space
from record import write_report

VARIANTS = {"default init, sum": ("default", False), "default init, rms": ("default", True),
            "he init, sum": ("he", False), "he init, rms": ("he", True)}


def measure(weight_init: str, rms: bool, sampler: PatchSampler, warmup: int,
            seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Per layer the output's std, per op/input label the architecture gradient's norm, after ``warmup`` steps."""
    torch.manual_seed(seed)
    space = build_space(MOD_NAS_GROWTH_SPACE)
    supernet = Supernet(space)
    initialise(supernet, weight_init)
    arch = ArchParameters(space, rms_mixing=rms)
    optimizer = torch.optim.Adam(supernet.parameters(), lr=1e-3)
    for step in range(warmup):
        noisy, clean = sampler.batch(step, stream=seed)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(supernet(noisy, arch.relaxed()), clean).backward()
        optimizer.step()
    noisy, clean = sampler.batch(0, stream=1000 + seed)
    stds: dict[str, float] = {}
    for name, layer in supernet.layers.items():
        layer.register_forward_hook(lambda module, inputs, output, name=name: stds.__setitem__(
            name, float(output.detach().std())))
    loss = torch.log(torch.nn.functional.mse_loss(supernet(noisy, arch.relaxed()), clean))
    grads = torch.autograd.grad(loss, list(arch.alphas.values()))
    return stds, {label: float(g.norm()) for label, g in zip(arch.alphas, grads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=16)
    args = parser.parse_args()
    sampler = PatchSampler(load_set(str(DATA / "train400"), 1), NoiseConfig(sigma=25), PATCH, BATCH, seed=0)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for variant, (weight_init, rms) in VARIANTS.items():
        runs = [measure(weight_init, rms, sampler, args.warmup, seed) for seed in range(args.seeds)]
        print(variant, "measured", flush=True)
        results[variant] = {kind: {key: statistics.median(run[i][key] for run in runs) for key in runs[0][i]}
                            for i, kind in enumerate(("output_std", "arch_grad_norm"))}
    stds = list(next(iter(results.values()))["output_std"])
    labels = list(next(iter(results.values()))["arch_grad_norm"])
    lines = [f"Median over {args.seeds} initialisations, after {args.warmup} weight steps; batches of {BATCH} "
             f"Train400 patches of {PATCH}² at σ 25, uniform alphas.", "",
             "## Output std per layer (head → bottom → tail)", "",
             "| layer | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    lines += [f"| {name} | " + " | ".join(f"{results[v]['output_std'][name]:.1e}" for v in VARIANTS) + " |"
              for name in stds]
    lines += ["", "## Architecture gradient norm per choice (Adam's ε: 1e-8)", "",
              "| choice | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    lines += [f"| {label} | " + " | ".join(f"{results[v]['arch_grad_norm'][label]:.0e}" for v in VARIANTS) + " |"
              for label in sorted(labels)]
    lines += ["", "Choices with a gradient under 1e-6 (100 × ε): " + ", ".join(
        f"{v}: {sum(g < 1e-6 for g in results[v]['arch_grad_norm'].values())} of {len(labels)}" for v in VARIANTS)]
    print(write_report("signal_propagation", results, "Signal propagation in a DARTS supernet", "\n".join(lines)))


if __name__ == "__main__":
    main()
