"""What one shared weight set buys a dynamic denoiser, and what it costs at inference.

For DDS-Net (slimmable DnCNN, 4 candidates from 20% to 100% width, DDS gate; and the frontier benchmark's
slimmable U-Net, 50% to 100%) and ClassPruning (N:M branches 1:4, 2:4, 4:4 of a DnCNN with variable BN,
difficulty classifier), the DnCNNs 17 layers × 64 channels:
parameters and ``final.pt`` size with one shared weight set against the E separately extracted networks
nasden stored before; CPU time of every candidate run from the shared weights against its extracted
network (interleaved, the median of ``--runs``, in one process so the ratio is fair); and what the gate
adds: the whole dynamic denoiser made to choose the smallest candidate (a huge cost bias) against that
candidate alone, the two back to back in alternating order (whichever runs second finds the caches
warm; in a fixed order that advantage lands on one side). DDS-Net's gate hands its first block to the
candidate (``DynamicDenoiser.shared_block``), so only its squeeze and head are extra; the classifier runs
its own four blocks. Random weights: time and size do not depend on them.

    python bench/shared_weights.py [--side 256] [--runs 31]

Results: bench/results/shared_weights.{json,md}.
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
from typing import Any, Callable

import torch

from nasden.core.cost import cost
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.extract import extract
from nasden.core.gates import build_gate
from nasden.core.specs import dynamic_spec
from nasden.core.supernet import Supernet
from nasden.deploy import model_file as final
from nasden.deploy.scoring import markdown_table
from nasden.pipeline.recipe import build_space
from nasden.strategies.class_pruning import branch_archs
from record import write_report

# the frontier benchmark's routing U-Net (channels 16/32/64 halving to 8/16/32): its skip concatenations read
# slim encoder outputs
UNET = {"backbone": "unet", "levels": 2, "channels": 16, "group": 4, "min_ratio": 0.5}


def megabytes(state: dict[str, Any]) -> float:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell() / 2 ** 20


def wall_times(calls: list[Callable[[], Any]], runs: int) -> list[list[float]]:
    """Wall times of each call over ``runs`` rounds, the calls interleaved in each round (noise hits all alike)."""
    times: list[list[float]] = [[] for _ in calls]
    with torch.no_grad():
        for call in calls:
            call()  # warm-up
        for _ in range(runs):
            for index, call in enumerate(calls):
                start = time.perf_counter()
                call()
                times[index].append(time.perf_counter() - start)
    return times


def gate_seconds(model: DynamicDenoiser, x: torch.Tensor, runs: int) -> tuple[float, dict[str, float]]:
    """What routing adds to the smallest candidate: the median over ``runs`` rounds of (routed − the smallest
    alone), the two run back to back in alternating order, so neither always meets caches the other warmed;
    also the medians of each order (a difference between them is the order's, not the gate's)."""
    model.cost_bias = 1e9  # always the smallest candidate
    calls = {"routed": lambda: model(x), "alone": lambda: model.candidates[0](x)}
    differences: dict[str, list[float]] = {"routed first": [], "alone first": []}
    with torch.no_grad():
        for call in calls.values():
            call()  # warm-up
        for round_ in range(runs):
            order = ("routed", "alone") if round_ % 2 else ("alone", "routed")
            seconds = {}
            for name in order:
                start = time.perf_counter()
                calls[name]()
                seconds[name] = time.perf_counter() - start
            differences[f"{order[0]} first"].append(seconds["routed"] - seconds["alone"])
    every = [d for values in differences.values() for d in values]
    return statistics.median(every), {k: statistics.median(v) for k, v in differences.items()}


def dds(backbone: dict[str, Any]) -> DynamicDenoiser:
    space = build_space({"name": "slimmable", **backbone})
    supernet = Supernet(space)
    widths = {label: choice.values for label, choice in space.choices().items()}
    archs = [{label: values[round(q * (len(values) - 1))] for label, values in widths.items()}
             for q in (0.0, 1 / 3, 2 / 3, 1.0)]
    flops = [cost(space, arch).flops_per_pixel for arch in archs]
    return DynamicDenoiser(build_gate(supernet, "dds", len(archs)), supernet, archs, flops)


def class_pruning() -> DynamicDenoiser:
    space = build_space({"name": "nm_branches", "backbone": "dncnn", "depth": 17, "channels": 64})
    supernet = Supernet(space)
    archs = list(branch_archs(space).values())
    flops = [cost(space, arch).flops_per_pixel for arch in archs]
    return DynamicDenoiser(build_gate(supernet, "classifier", len(archs)), supernet, archs, flops)


def measure(name: str, model: DynamicDenoiser, side: int, runs: int) -> list[dict[str, Any]]:
    model.eval()
    space = model.network.space
    extracted = [extract(model.network, arch).eval() for arch in model.archs]
    separate = {f"candidates.{i}.{k}": v for i, net in enumerate(extracted) for k, v in net.state_dict().items()}
    separate.update({f"gate.{k}": v for k, v in model.gate.state_dict().items()})
    x = torch.rand(1, space.in_channels, side, side)
    calls: list[Callable[[], Any]] = []
    for view, network in zip(model.candidates, extracted):
        calls += [lambda view=view: view(x), lambda network=network: network(x)]
    seconds = [statistics.median(t) for t in wall_times(calls, runs)]
    pairs = list(zip(seconds[0::2], seconds[1::2]))
    gate_s, by_order = gate_seconds(model, x, runs)
    described = final.describe(model, space, dynamic_spec(model))
    rows = []
    for index, (shared_s, extracted_s) in enumerate(pairs):
        rows.append({"method": name, "candidate": index, "flops_per_pixel": round(model.flops[index]),
                     "shared_ms": round(1000 * shared_s, 2), "extracted_ms": round(1000 * extracted_s, 2),
                     "shared/extracted": round(shared_s / extracted_s, 3)})
    rows.append({"method": name, "candidate": "gate (routed − smallest)", "flops_per_pixel": round(model.gate_flops),
                 "shared_ms": round(1000 * gate_s, 2), "extracted_ms": "",
                 "shared/extracted": f"{gate_s / pairs[0][0]:.3f} of the smallest"})
    summary = {"method": name, "params_shared": described["params"],
               "params_separate": sum(v.numel() for v in separate.values() if v.is_floating_point()),
               "final_pt_mb_shared": round(megabytes(model.state_dict()), 3),
               "final_pt_mb_separate": round(megabytes(separate), 3),
               "gate_flops_ratio": round(model.gate_flops / model.flops[0], 4),
               "gate_time_ratio": round(gate_s / pairs[0][0], 4),
               **{f"gate_ms, {order}": round(1000 * v, 3) for order, v in by_order.items()}}
    return [summary, *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--runs", type=int, default=31)
    args = parser.parse_args()
    torch.manual_seed(0)
    methods: dict[str, Callable[[], DynamicDenoiser]] = {
        "DDS-Net": lambda: dds({"backbone": "dncnn", "depth": 17, "channels": 64}),
        "DDS-Net, U-Net": lambda: dds(UNET), "ClassPruning": class_pruning}
    results = {name: measure(name, build(), args.side, args.runs) for name, build in methods.items()}
    sizes = [rows[0] for rows in results.values()]
    times = [row for rows in results.values() for row in rows[1:]]
    body = (f"One {args.side}×{args.side} gray image, CPU, median of {args.runs} interleaved runs.\n\n"
            "## Size: one shared weight set against E separately extracted networks\n\n"
            + markdown_table(sizes) + "\n## Time: each candidate from the shared weights against its extracted "
            "network; the gate against the smallest candidate\n\n" + markdown_table(times))
    print(write_report("shared_weights", {"settings": vars(args), "sizes": sizes, "times": times},
                       "Dynamic denoisers: one shared weight set", body))


if __name__ == "__main__":
    main()
