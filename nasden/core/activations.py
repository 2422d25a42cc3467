"""Memory a network needs, known before it is needed (checked with :func:`nasden.common.memory.check_fits`).

Activations are measured, not guessed: one forward pass of the network on a small input, with a hook that
adds up the bytes every leaf module returns (what a backward pass keeps, about) and the largest of them
(what an inference pass holds at once, about), per input pixel. Both scale with the
pixels of a batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from torch.utils._pytree import tree_flatten

TRAINING_FACTOR = 1  # what a backward pass keeps is about the leaf outputs; their gradients come and go layer by layer
INFERENCE_FACTOR = 4  # an inference pass holds a few of its largest tensors at once (input, output, branches)


class _LeafOutputBytes:
    """A global forward hook that adds up the bytes every leaf module returns (convolutions, norms,
    activations: where a network's memory goes), and keeps the largest."""

    def __init__(self) -> None:
        self.total = self.largest = 0

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if next(module.children(), None) is not None:
            return
        for tensor in tree_flatten(output)[0]:
            if isinstance(tensor, torch.Tensor):
                size = tensor.numel() * tensor.element_size()
                self.total += size
                self.largest = max(self.largest, size)


@dataclass(frozen=True)
class PixelBytes:
    """Bytes per input pixel: all the activations of a forward pass, and its largest single tensor."""

    activations: float
    largest: float

    def training(self, pixels: int) -> float:
        return TRAINING_FACTOR * self.activations * pixels

    def inference(self, pixels: int) -> float:
        return INFERENCE_FACTOR * self.largest * pixels


def pixel_bytes(network: nn.Module, channels: int, multiple: int = 1, **forward: Any) -> PixelBytes:
    """Measure :class:`PixelBytes` of ``network`` on one small ``channels``-channel image (side a multiple of
    ``multiple``); ``forward``: keyword arguments of its forward (e.g. ``arch``)."""
    side = max(16, 4 * multiple)
    x = torch.zeros(1, channels, side, side, device=next(network.parameters()).device)
    counter = _LeafOutputBytes()
    handle = register_module_forward_hook(counter)
    try:
        with torch.no_grad():
            network(x, **forward)
    finally:
        handle.remove()
    return PixelBytes(counter.total / side ** 2, counter.largest / side ** 2)


def parameter_bytes(params: float) -> float:
    """Weights, their gradients and Adam's two moments, in float32."""
    return 4 * 4 * params

