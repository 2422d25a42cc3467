"""Weight initialisation of a supernet's convolutions: PyTorch's default, or He's with residual branches at zero.

PyTorch's default (``kaiming_uniform_`` with a = √5) draws a convolution's weights with variance
1 / (3 fan-in). Behind a ReLU, which halves the second moment, a layer then divides its input's variance by 6:
the signal's scale falls 2.4× per layer. That has a use: a deep residual denoiser starts close to the identity
map, and a plain network trains past the rest, Adam rescaling each weight's steps. But in a DARTS supernet, whose
mixed op sums K independent candidates at weight 1/K (another √K per layer), the coarse levels of a BN-free U-Net
start silent and their architecture gradients at 1e-6 to 1e-14, under Adam's ε, so those choices never move
(``bench/signal_propagation.py``).

``he`` draws N(0, 2 / fan-in) (He et al., ICCV 2015), which keeps the variance through ReLU-conv layers, and sets
to zero the layers that end a residual branch (those an ``add`` node reads, and the output's in a residual space),
as SkipInit and Fixup do: the network still starts as the identity map, yet every inner layer passes signal.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from nasden.core.ops.convolution import DynamicConvTranspose
from nasden.core.space import SearchSpace
from nasden.core.supernet import Supernet

WeightInit = Literal["default", "he"]
WEIGHT_INITS: tuple[str, ...] = ("default", "he")


def fan_in(module: nn.Module, weight: torch.Tensor) -> float:
    """The inputs one output pixel of ``weight``'s convolution sums: in-channels × kernel area; for a stride-2
    transposed convolution a quarter of its kernel reaches each output pixel."""
    if isinstance(module, DynamicConvTranspose):
        return weight.shape[0] * weight[0, 0].numel() / 4
    return weight[0].numel()


def branch_ends(space: SearchSpace) -> set[str]:
    """The layers whose output a residual connection adds to its input: those an ``add`` node reads, and the one
    the output reads in a residual space."""
    ends = {pred for node in space.nodes.values() if node.kind == "add" for pred in node.preds}
    if space.residual:
        ends.update(space.output_node.preds)
    return {name for name in ends if space.nodes[name].kind == "layer"}


@torch.no_grad()
def he_(module: nn.Module) -> None:
    """Redraw every convolution weight (4-D parameter) under ``module`` from N(0, 2 / fan-in), the global RNG."""
    for owner in module.modules():
        for weight in owner.parameters(recurse=False):
            if weight.dim() == 4:
                weight.normal_(0.0, math.sqrt(2.0 / fan_in(owner, weight)))


@torch.no_grad()
def initialise(supernet: Supernet, scheme: WeightInit) -> None:
    """Redraw ``supernet``'s convolution weights by ``scheme``; biases and other parameters keep their values (the
    ends of residual branches: every weight zero). ``default`` leaves the supernet as built."""
    if scheme not in WEIGHT_INITS:
        raise ValueError(f"weight_init: expected one of {', '.join(WEIGHT_INITS)}, got {scheme!r}")
    if scheme == "default":
        return
    ends = branch_ends(supernet.space)
    for name, layer in supernet.layers.items():
        he_(layer)
        if name in ends:
            for weight in layer.parameters():
                weight.zero_()
