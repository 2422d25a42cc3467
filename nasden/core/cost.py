"""Cost of an architecture: multiply-adds per input pixel and parameters, from the graph alone;
and measured latency."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from nasden.common.registry import OPS
from nasden.core.shapes import chosen_input, chosen_nm, chosen_op, layouts, live_nodes
from nasden.core.space import SearchSpace


@dataclass(frozen=True)
class Cost:
    """Multiply-adds per pixel of the input image and parameter count of an architecture.

    Convolutions are counted as ``torch.utils.flop_counter`` counts them (bias, BN, ReLU,
    pooling, interpolation and unfolding updates are free); layers that a chosen input skips
    are not counted. An N:M-sparse layer counts its dense multiply-adds
    × N/M, as the N:M pruning literature does; parameters are the dense count.
    """

    macs_per_pixel: float
    params: int

    @property
    def flops_per_pixel(self) -> float:
        """2 FLOPs per multiply-add, the convention of ``FlopCounterMode``."""
        return 2.0 * self.macs_per_pixel


def cost(space: SearchSpace, arch: Mapping[str, Any]) -> Cost:
    """The :class:`Cost` of a discrete architecture, without building any module."""
    shapes = layouts(space, arch)
    live = live_nodes(space, arch)
    macs, params = 0.0, 0
    for name, node in space.nodes.items():
        if node.kind == "unfold" and name in live:
            params += 2
        if node.kind != "layer" or name not in live:
            continue
        cin = shapes[chosen_input(node, arch)].channels
        layer_macs, layer_params = OPS.get(chosen_op(node, arch)).cost(cin, shapes[name].channels)
        nm = chosen_nm(node, arch)
        if nm is not None and cin % nm[1] == 0:
            layer_macs *= nm[0] / nm[1]
        macs += layer_macs / 4.0 ** node.scale
        params += layer_params
    return Cost(macs, params)


@torch.no_grad()
def measure_latency(model: nn.Module, example: torch.Tensor, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time in seconds of ``model(example)`` over ``runs`` calls after ``warmup`` calls.

    On CUDA the device is synchronised around every call.
    """
    model.eval()
    sync = torch.cuda.synchronize if example.is_cuda else (lambda: None)
    for _ in range(warmup):
        model(example)
    times = []
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        model(example)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
