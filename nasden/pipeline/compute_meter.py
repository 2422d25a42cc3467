"""Compute spent, counted as it runs: the FLOPs of every convolution and matrix product, forward and backward.

Comparing methods fairly means giving each the same training compute, search included. Counting
the ops that actually run, rather than estimating them per strategy, covers every stage alike: a
sandwich step counts each sub-network it runs, a DARTS step its mixed ops as computed (collapsed
or not), a gate's labels the candidates' forward passes, an N:M layer its dense convolution (which
is what runs). A backward pass costs about twice its forward (input and weight gradients; the
first layer has no input gradient), so a training step costs about 3 × its forward FLOPs.
FLOPs are counted as ``torch.utils.flop_counter`` counts them (2 per multiply-add); elementwise
ops are free, as in :mod:`nasden.core.cost`. One correction: up to torch 2.13 its formula for a convolution's
weight gradient ignores ``groups``, so a depthwise convolution's backward counted ``channels`` times what
runs (a separable conv 3×3 of 16 channels: 7.4× its forward instead of 2×; a DARTS weight step over the
frontier benchmark's MoD-NAS spaces 18-20% too much). The counter divides that term by ``groups``.
"""
from __future__ import annotations

from typing import Any

from torch.ops import aten
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

TRAIN_FLOPS_PER_FORWARD = 3  # a training step's FLOPs per forward FLOP: the forward and a backward of about twice it


class ComputeCounter(TorchDispatchMode):
    """``with ComputeCounter() as counter: ...`` counts every counted op's FLOPs into ``counter.flops``."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            flops = int(count(*args, **kwargs, out_val=out))
            if func._overloadpacket is aten.convolution_backward:
                flops -= _ungrouped_weight_gradient_excess(count, args, out)
            self.flops += flops
        return out


def _ungrouped_weight_gradient_excess(count: Any, args: tuple, out: Any) -> int:
    """What ``count`` (the registry's ``convolution_backward`` formula) adds for a grouped convolution's weight
    gradient beyond its true cost: it counts that term as if the convolution were not grouped."""
    groups, output_mask = args[9], args[10]
    if groups == 1 or not output_mask[1]:
        return 0
    weight_term = int(count(*args[:10], [False, True, False], out_val=out))
    return weight_term - weight_term // groups
