"""Seconds per step of recipes/mod_nas.yaml's search and retraining, to say how long the paper recipe takes.

Times the darts stage's two passes per step (architecture step with alpha-only gradients, weight step) on
the paper-sized space (T = 1, 48 channels, two levels; batch 12 of 64² patches, channels-last as the stage
runs them) with each ``sampling`` (the softmax, Gumbel-softmax samples, one sampled path; interleaved, best of
``--repeats``) and a retraining step of the largest architecture (batch 32), on random tensors.

    python bench/mod_nas_step_time.py [--stages 1] [--steps 3] [--repeats 2]

Results: bench/results/mod_nas_step_time.json.
"""
from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from nasden.core.extract import extract
from nasden.core.relaxation import ArchParameters
from nasden.core.supernet import Supernet
from nasden.pipeline.recipe import build_space
from nasden.strategies.darts import Search
from record import write_json


def seconds_per_call(step: Callable[[], None], calls: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    space = build_space({"name": "mod_unet", "stages": args.stages, "levels": 2, "channels": 48, "layers": 3})
    supernet = Supernet(space).to(memory_format=torch.channels_last)
    arch = ArchParameters(space)
    search = Search(supernet, arch)
    optimizer = torch.optim.Adam(supernet.parameters(), 1e-3)
    noisy = torch.rand(12, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    clean = torch.rand(12, 1, 64, 64)

    generator = torch.Generator().manual_seed(0)

    def search_step(sampling: str) -> None:
        search.hard = sampling == "gumbel_hard"
        for forward in (search, search.weights_forward):
            search.noise = None if sampling == "softmax" else arch.gumbel_noise(generator)
            loss = F.mse_loss(forward(noisy), clean)
            if forward is search:
                torch.autograd.grad(torch.log(loss), list(arch.parameters()))
            else:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

    network = extract(Supernet(space), space.largest())
    network_optimizer = torch.optim.Adam(network.parameters(), 1e-3)
    batch, target = torch.rand(32, 1, 64, 64), torch.rand(32, 1, 64, 64)

    def train_step() -> None:
        network_optimizer.zero_grad()
        F.mse_loss(network(batch), target).backward()
        network_optimizer.step()

    samplings = ("softmax", "gumbel", "gumbel_hard")
    times: dict[str, list[float]] = {sampling: [] for sampling in samplings}
    for _ in range(args.repeats):  # interleaved: the machine's drift hits every sampling alike
        for sampling in samplings:
            times[sampling].append(seconds_per_call(partial(search_step, sampling), args.steps))
    by_sampling = {sampling: min(values) for sampling, values in times.items()}
    search_s, train_s = by_sampling["softmax"], seconds_per_call(train_step, args.steps)
    figures = {"stages": args.stages, "search_seconds_per_step": round(search_s, 3),
               "search_seconds_per_step_by_sampling": {k: round(v, 3) for k, v in by_sampling.items()},
               "search_step_ratio_to_softmax": {k: round(v / search_s, 2) for k, v in by_sampling.items()},
               "retrain_seconds_per_step_largest": round(train_s, 3),
               "hours_for_recipe": {"search_20000_steps": round(20000 * search_s / 3600, 1),
                                    "retrain_100000_steps_largest": round(100000 * train_s / 3600, 1)}}
    print(figures)
    write_json("mod_nas_step_time", figures)


if __name__ == "__main__":
    main()
