"""Do slimmed sub-networks run faster in wall-clock time, in proportion to their FLOPs?

DnCNN-like graph (17 layers, 64 channels, BN), gray 256×256, batch 1, CPU. Sub-networks at
25/50/75/100% width are extracted from one supernet and timed in this one process (median of
``--runs`` calls, interleaved rounds so machine noise hits all widths alike).

    python bench/realized_speed.py [--runs 30]

Writes bench/results/realized_speed.json. quotient = FLOPs ratio / wall-time ratio (1.0: time
falls exactly as FLOPs do).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from nasden import Supernet, cost, extract
from nasden.common.registry import SPACES
from record import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    space = SPACES.get("dncnn")(depth=17, channels=64, group=16, min_ratio=0.25)
    supernet = Supernet(space).eval()
    x = torch.rand(1, 1, args.size, args.size)
    nets, costs = {}, {}
    for width in (16, 32, 48, 64):
        arch = {label: width for label in space.choices()}
        nets[width] = extract(supernet, arch).eval()
        costs[width] = cost(space, arch)
    times: dict[int, list[float]] = {w: [] for w in nets}
    with torch.inference_mode():
        for net in nets.values():  # warm-up
            for _ in range(3):
                net(x)
        for _ in range(args.runs):  # interleaved rounds
            for width, net in nets.items():
                start = time.perf_counter()
                net(x)
                times[width].append(time.perf_counter() - start)
    full_time = statistics.median(times[64])
    full_flops = costs[64].flops_per_pixel
    widths = {}
    for width in nets:
        median = statistics.median(times[width])
        flops_ratio = costs[width].flops_per_pixel / full_flops
        time_ratio = median / full_time
        widths[f"{100 * width // 64}%"] = {
            "channels": width, "flops_per_pixel": costs[width].flops_per_pixel, "params": costs[width].params,
            "flops_ratio": round(flops_ratio, 4), "median_ms": round(1000 * median, 2),
            "time_ratio": round(time_ratio, 4), "quotient": round(flops_ratio / time_ratio, 3),
        }
        print(f"width {width:3d}: FLOPs ratio {flops_ratio:.3f}  time {1000 * median:7.2f} ms  "
              f"time ratio {time_ratio:.3f}  quotient {flops_ratio / time_ratio:.3f}")
    path = write_json("realized_speed", {"input": [1, 1, args.size, args.size], "runs": args.runs, "widths": widths})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
