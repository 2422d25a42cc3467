"""Built-in backbone graphs: a DnCNN-like plain network, an FFDNet-like one and a small U-Net.

Both are fixed networks by default; with ``group`` set, every hidden layer also gets width
choices (multiples of ``group`` from ``min_ratio`` of its channels), making it the backbone
of a slimmable space.
"""
from __future__ import annotations

import networkx as nx

from nasden.common.registry import register_space
from nasden.core.space import SearchSpace, width_choices


class _Builder:
    """Appends layers to a graph, each reading the previous one."""

    def __init__(self, image_channels: int, group: int | None, min_ratio: float):
        self.graph = nx.DiGraph(residual=True)
        self.graph.add_node("input", op="input", channels=image_channels)
        self.group, self.min_ratio, self.last = group, min_ratio, "input"

    def layer(self, name: str, op: str | list[str], channels: int | None = None, src: str | None = None,
              slimmable: bool = True) -> str:
        attrs: dict = {"op": op}
        if channels is not None:
            attrs["channels"] = channels
            if slimmable and self.group:
                attrs["widths"] = width_choices(channels, self.group, self.min_ratio)
        self.graph.add_node(name, **attrs)
        self.graph.add_edge(src or self.last, name)
        self.last = name
        return name

    def merge(self, name: str, op: str, inputs: list[str]) -> str:
        self.graph.add_node(name, op=op)
        for src in inputs:
            self.graph.add_edge(src, name)
        self.last = name
        return name

    def finish(self, image_channels: int) -> nx.DiGraph:
        self.layer("tail", "conv3x3", image_channels, slimmable=False)
        self.layer("output", "output")
        return self.graph


def dncnn_graph(depth: int = 17, channels: int = 64, image_channels: int = 1, bn: bool = True,
                group: int | None = None, min_ratio: float = 0.25, attention: bool = False,
                ops: list[str] | None = None) -> nx.DiGraph:
    """DnCNN: conv+ReLU, (depth-2) × conv+BN+ReLU, conv; residual learning (predicts the noise).

    ``attention`` puts DDS-Net's attention head after the first conv block. ``ops`` makes every
    hidden layer (all but the first and last) an op choice among these candidates.
    """
    if not 2 <= depth <= 1000:
        raise ValueError(f"dncnn depth must be in 2..1000, got {depth}")
    b = _Builder(image_channels, group, min_ratio)
    for i in range(1, depth):
        b.layer(f"conv{i}", ops if ops and i > 1 else "conv3x3", channels)
        if bn and i > 1:
            b.layer(f"bn{i}", "bn")
        b.layer(f"relu{i}", "relu")
        if attention and i == 1:
            b.layer("attention", "attention")
    return b.finish(image_channels)


def ffdnet_graph(depth: int = 12, channels: int = 64, image_channels: int = 1, group: int | None = None,
                 min_ratio: float = 0.25) -> nx.DiGraph:
    """FFDNet-like: pixel-unshuffle + conv+ReLU to half resolution, (depth-2) × conv+ReLU there, then
    pixel-shuffle + conv back to the image; residual learning, no BN, no noise-level map (blind).

    Working at a quarter of the pixels gives FFDNet the best PSNR per FLOP of the standard denoisers.
    """
    if not 2 <= depth <= 1000:
        raise ValueError(f"ffdnet depth must be in 2..1000, got {depth}")
    b = _Builder(image_channels, group, min_ratio)
    b.layer("down", "unshuffle_conv3x3", channels)
    b.layer("down_relu", "relu")
    for i in range(2, depth):
        b.layer(f"conv{i}", "conv3x3", channels)
        b.layer(f"relu{i}", "relu")
    b.layer("up", "pixelshuffle_conv3x3", image_channels, slimmable=False)
    b.layer("output", "output")
    return b.graph


def unet_graph(levels: int = 2, channels: int = 16, image_channels: int = 1, group: int | None = None,
               min_ratio: float = 0.25, attention: bool = False, convs: int | list[int] = 2,
               bn: bool = False, op: str = "conv3x3") -> nx.DiGraph:
    """A small U-Net: conv+ReLU blocks per level, stride-2 conv down, transposed conv up, skip concat.

    ``convs``: conv+ReLU pairs in each of a level's blocks (encoder and decoder), one number for every level or
    one per level, finest first (the bottom level has only its encoder block); ``op``: the blocks' op (the
    down- and up-sampling convolutions stay). ``bn`` puts BatchNorm between every conv and its ReLU but the
    first, as DnCNN does. ``attention`` puts DDS-Net's attention head after the first conv block.
    """
    if not 1 <= levels <= 8:
        raise ValueError(f"unet levels must be in 1..8, got {levels}")
    depths = [convs] * (levels + 1) if isinstance(convs, int) else list(convs)
    if len(depths) != levels + 1 or not all(isinstance(d, int) and 1 <= d <= 16 for d in depths):
        raise ValueError(f"unet convs: expected one count in 1..16, or {levels + 1} (one per level), got {convs}")
    b = _Builder(image_channels, group, min_ratio)

    def conv_relu(name: str, layer_op: str, width: int) -> str:
        b.layer(name, layer_op, width)
        if bn and name != "enc0a":
            b.layer(f"{name}_bn", "bn")
        return b.layer(f"{name}_relu", "relu")

    skips = []
    for level, depth in enumerate(depths):
        width = channels * 2 ** level
        if level:
            conv_relu(f"down{level}", "conv3x3_s2", width)
        for j in range(depth):
            conv_relu(f"enc{level}{_suffix(j)}", op, width)
            if attention and level == 0 and j == 0:
                b.layer("attention", "attention")
        skips.append(b.last)
    for level in reversed(range(levels)):
        width = channels * 2 ** level
        b.layer(f"up{level}", "convT3x3_s2", width)
        b.merge(f"cat{level}", "concat", [f"up{level}", skips[level]])
        for j in range(depths[level]):
            conv_relu(f"dec{level}{_suffix(j)}", op, width)
    return b.finish(image_channels)


def _suffix(j: int) -> str:
    """A block's j-th conv: a, b, c, ..."""
    return "abcdefghijklmnop"[j]


@register_space("dncnn")
def dncnn(depth: int = 17, channels: int = 64, image_channels: int = 1, bn: bool = True,
          group: int | None = None, min_ratio: float = 0.25, ops: list[str] | None = None) -> SearchSpace:
    """DnCNN-like plain network (fixed; width choices when ``group`` is set; op choices with ``ops``)."""
    return SearchSpace(dncnn_graph(depth, channels, image_channels, bn, group, min_ratio, ops=ops), "dncnn")


@register_space("ffdnet")
def ffdnet(depth: int = 12, channels: int = 64, image_channels: int = 1, group: int | None = None,
           min_ratio: float = 0.25) -> SearchSpace:
    """FFDNet-like plain network at half resolution (fixed; width choices when ``group`` is set)."""
    return SearchSpace(ffdnet_graph(depth, channels, image_channels, group, min_ratio), "ffdnet")


@register_space("unet")
def unet(levels: int = 2, channels: int = 16, image_channels: int = 1, group: int | None = None,
         min_ratio: float = 0.25, convs: int | list[int] = 2, bn: bool = False, op: str = "conv3x3") -> SearchSpace:
    """Small U-Net with skip concatenation (fixed; width choices when ``group`` is set; ``convs`` per block,
    optional BatchNorm, the blocks' ``op``)."""
    return SearchSpace(unet_graph(levels, channels, image_channels, group, min_ratio, convs=convs, bn=bn, op=op),
                       "unet")
