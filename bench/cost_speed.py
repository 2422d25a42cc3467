"""How fast the cost model prices an architecture (search strategies call it once per candidate).

    python bench/cost_speed.py [--archs 1000]

Times ``cost(space, arch)`` over random architectures of a 17-layer, 64-channel DnCNN-like width space.
Results: bench/results/cost_speed.json.
"""
from __future__ import annotations

import argparse
import time

from nasden.core.cost import cost
from nasden.pipeline.recipe import build_space
from record import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", type=int, default=1000)
    args = parser.parse_args()
    space = build_space({"name": "dncnn", "depth": 17, "channels": 64, "group": 8})
    archs = [space.sample(seed) for seed in range(args.archs)]
    start = time.perf_counter()
    for arch in archs:
        cost(space, arch)
    per_arch_ms = 1000 * (time.perf_counter() - start) / len(archs)
    print(f"cost(): {per_arch_ms:.3f} ms per architecture ({len(archs)} architectures)")
    write_json("cost_speed", {"archs": len(archs), "ms_per_arch": round(per_arch_ms, 4)})


if __name__ == "__main__":
    main()
