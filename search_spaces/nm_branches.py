"""ClassPruning's restoration module: N:M sparsity branches of one base network that share its weights.

One shared label (``nm:branch``) selects the branch: every convolution gets the patterns (1:4, 2:4 and 4:4
by default) and masks its weight by magnitude along the input channels at every forward pass;
convolutions whose input channels are not a multiple of M (the first, reading the image) stay dense,
and ops without an N:M form (transposed convolutions) too. With ``variable_bn`` every BatchNorm
becomes one BatchNorm per branch (variable BatchNorm); without it the branches share one (the
paper's "vBN → BN" ablation).
"""
from __future__ import annotations

from typing import Literal

import networkx as nx

from nasden.common.registry import OPS, register_space
from nasden.core.ops.nm import parse_nm
from nasden.core.space import SearchSpace
from nasden.search_spaces.backbones import dncnn_graph, unet_graph

DEFAULT_PATTERNS = ("1:4", "2:4", "4:4")


def nm_graph(graph: nx.DiGraph, patterns: list[str] | tuple[str, ...] = DEFAULT_PATTERNS, variable_bn: bool = True,
             label: str = "branch") -> nx.DiGraph:
    """A copy of ``graph`` whose convolutions choose an N:M pattern by one shared ``label``."""
    if len(set(patterns)) < 2:
        raise ValueError(f"patterns: expected at least two distinct N:M patterns, got {list(patterns)}")
    for pattern in patterns:
        parse_nm(pattern)
    graph = graph.copy()
    for _, attrs in graph.nodes(data=True):
        ops = attrs["op"] if isinstance(attrs["op"], list) else [attrs["op"]]
        if ops == ["bn"] and variable_bn:
            attrs["op"] = "vbn"
        elif not all(name in OPS and OPS.get(name).supports_nm and not OPS.get(name).preserves_channels
                     for name in ops):
            continue
        attrs["nm"], attrs["nm_label"] = list(patterns), label
    return graph


@register_space("nm_branches")
def nm_branches(backbone: Literal["dncnn", "unet"] = "dncnn", depth: int = 17, channels: int = 64,
                levels: int = 2, image_channels: int = 1, bn: bool = True,
                patterns: list[str] = list(DEFAULT_PATTERNS), variable_bn: bool = True) -> SearchSpace:
    """N:M branches (label ``nm:branch``) of a DnCNN-like net (``depth``, BN) or a small U-Net (``levels``)."""
    if backbone == "dncnn":
        base = dncnn_graph(depth, channels, image_channels, bn)
    elif backbone == "unet":
        base = unet_graph(levels, channels, image_channels)
    else:
        raise ValueError(f"backbone {backbone!r}: expected 'dncnn' or 'unet'")
    return SearchSpace(nm_graph(base, patterns, variable_bn), "nm_branches")
