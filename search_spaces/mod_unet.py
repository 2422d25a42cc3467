"""MoD-NAS's model-guided unfolded space: T unfolding steps, each with its own searchable U-Net.

Step t computes ``v_t = D_t(x_{t-1})`` and ``x_t = x_{t-1} - delta_t [(x_{t-1} - y) + eta_t (x_{t-1} - v_t)]``
(Eq. 6a-6b, an ``unfold`` node with learnable ``delta_t``, ``eta_t``), from ``x_0 = y``. The
denoiser D_t (Figure 1, restored in ../shared/papers/NOTES.md):

* a head convolution (image → ``channels``);
* ``levels`` encoding blocks: ``layers`` normal layers, then a down-sampling layer;
* a bottom block and ``levels - 1`` decoding blocks: ``layers`` normal layers, then an up-sampling
  layer; the last decoding block has no up-sampling layer (``levels + 1`` decoding blocks in all);
* skips: a decoding block reads the concatenation of the up-sampled tensor and the encoder's
  output at its resolution; with ``fusion`` (an op name, e.g. ``conv3x3``) a fusion convolution
  without activation maps the concatenation back to ``channels`` first, as the "Conv 72 → 36" rows of
  the paper's appendix tables do (their kernel size is lost; ``fusion`` names it);
* a tail convolution (``channels`` → image), and ``v_t = x_{t-1} + tail`` when
  ``residual_denoiser`` (the paper is silent; residual learning is the usual choice for denoisers).

Every layer but the head applies ReLU to its input (``pre_relu``) and none has BatchNorm. Searchable
per layer: the op (``normal_ops`` / ``down_ops`` / ``up_ops``), the width (a ``width`` label per
layer with every multiple of ``group`` up to ``channels``; differentiable search relaxes it to one
parameter per output channel) and, inside a block, the input of each normal layer after the first
(dense depth connections over all earlier layers of the block and, in encoding blocks, the block's
input; a decoding block's input is the wider concatenation, which only its first layer reads).
Channels stay the same at every resolution, as in the paper's searched networks; ``growth`` multiplies them
at each level down (2: the usual U-Net, channels doubling as the resolution halves; a coarse level's channel
costs a quarter of the level above's).

Candidate ops: the defaults are the Figure 1 candidates NOTES.md restores. The appendix's searched
networks also use ops Figure 1 cannot show: ``PAPER_NORMAL_OPS`` adds the residual block (the most
frequent op there), ``PAPER_DOWN_OPS`` down-sampling by nearest / bilinear / area interpolation
followed by a conv, ``PAPER_UP_OPS`` area interpolation; ``recipes/mod_nas.yaml`` searches those.
"""
from __future__ import annotations

import networkx as nx

from nasden.common.registry import register_space
from nasden.core.space import SearchSpace, width_choices

NORMAL_OPS = ["conv3x3", "conv5x5", "dilconv3x3", "dilconv5x5", "sepconv3x3", "sepconv5x5"]
DOWN_OPS = ["conv3x3_s2", "conv5x5_s2", "maxpool_conv1x1", "avgpool_conv1x1"]
UP_OPS = ["convT3x3_s2", "bilinear_conv3x3", "nearest_conv3x3", "pixelshuffle_conv3x3"]
PAPER_NORMAL_OPS = [*NORMAL_OPS, "resblock3x3"]
PAPER_DOWN_OPS = [*DOWN_OPS, "nearest_down_conv3x3", "bilinear_down_conv3x3", "area_down_conv3x3"]
PAPER_UP_OPS = [*UP_OPS, "area_conv3x3"]


class _StageBuilder:
    """Adds the nodes of one unfolding step's denoiser to the graph."""

    def __init__(self, graph: nx.DiGraph, prefix: str, channels: int, group: int | None, growth: int):
        self.graph, self.prefix, self.channels, self.group, self.growth = graph, prefix, channels, group, growth

    def layer(self, name: str, ops: list[str], inputs: list[str], pre_relu: bool = True, level: int = 0,
              channels: int | None = None) -> str:
        """A layer at resolution ``level`` (its channels and widths), or of fixed ``channels``."""
        name = f"{self.prefix}{name}"
        width = self.channels * self.growth ** level
        attrs = {"op": ops if len(ops) > 1 else ops[0], "pre_relu": pre_relu, "channels": channels or width}
        if channels is None and self.group:
            attrs["widths"] = width_choices(width, self.group, self.group / width)
        self.graph.add_node(name, **attrs)
        for source in inputs:
            self.graph.add_edge(source, name, **({"candidate": True} if len(inputs) > 1 else {}))
        return name

    def block(self, name: str, start: str, layers: int, normal_ops: list[str], dense_from_start: bool,
              level: int) -> str:
        """``layers`` normal layers; layer j > 1 reads any earlier layer (and ``start`` if dense_from_start)."""
        outputs: list[str] = []
        for j in range(1, layers + 1):
            earlier = ([start] if dense_from_start else []) + outputs
            outputs.append(self.layer(f"{name}_n{j}", normal_ops, earlier or [start], level=level))
        return outputs[-1]


def mod_unet_graph(stages: int = 1, levels: int = 2, channels: int = 48, layers: int = 3, image_channels: int = 1,
                   normal_ops: list[str] | None = None, down_ops: list[str] | None = None,
                   up_ops: list[str] | None = None, group: int | None = 8,
                   residual_denoiser: bool = True, fusion: str | None = None, growth: int = 1) -> nx.DiGraph:
    """The graph of the unfolded space (see the module docstring); ``group=None`` fixes every width."""
    if not 1 <= stages <= 32 or not 1 <= levels <= 6 or not 1 <= layers <= 8 or not 1 <= growth <= 4:
        raise ValueError(f"mod_unet: expected stages in 1..32, levels in 1..6, layers in 1..8 and growth in 1..4, "
                         f"got {stages}, {levels}, {layers}, {growth}")
    normal_ops, down_ops, up_ops = normal_ops or NORMAL_OPS, down_ops or DOWN_OPS, up_ops or UP_OPS
    if group:
        width_choices(channels, group)  # channels must be a multiple of the group (then so is every level's)
    graph = nx.DiGraph(residual=False)
    graph.add_node("input", op="input", channels=image_channels)
    previous = "input"
    for t in range(1, stages + 1):
        b = _StageBuilder(graph, f"t{t}_", channels, group, growth)
        current = b.layer("head", ["conv3x3"], [previous], pre_relu=False)
        skips = []
        for level in range(levels):
            skips.append(b.block(f"enc{level}", current, layers, normal_ops, dense_from_start=True, level=level))
            current = b.layer(f"enc{level}_down", down_ops, [skips[-1]], level=level + 1)
        current = b.block(f"dec{levels}", current, layers, normal_ops, dense_from_start=True, level=levels)
        for level in reversed(range(levels)):
            up = b.layer(f"dec{level + 1}_up", up_ops, [current], level=level)
            cat = f"t{t}_cat{level}"
            graph.add_node(cat, op="concat")
            graph.add_edge(up, cat)
            graph.add_edge(skips[level], cat)
            start = b.layer(f"dec{level}_fuse", [fusion], [cat], pre_relu=False, level=level) if fusion else cat
            current = b.block(f"dec{level}", start, layers, normal_ops, dense_from_start=False, level=level)
        tail = b.layer("tail", ["conv3x3"], [current], channels=image_channels)
        denoised = tail
        if residual_denoiser:
            denoised = f"t{t}_v"
            graph.add_node(denoised, op="add")
            graph.add_edges_from([(previous, denoised), (tail, denoised)])
        step = f"t{t}_x"
        graph.add_node(step, op="unfold", denoised=denoised)
        graph.add_edges_from([("input", step), (denoised, step)] + ([(previous, step)] if previous != "input" else []))
        previous = step
    graph.add_node("output", op="output")
    graph.add_edge(previous, "output")
    return graph


@register_space("mod_unet")
def mod_unet(stages: int = 1, levels: int = 2, channels: int = 48, layers: int = 3, image_channels: int = 1,
             normal_ops: list[str] | None = None, down_ops: list[str] | None = None, up_ops: list[str] | None = None,
             group: int | None = 8, residual_denoiser: bool = True, fusion: str | None = None,
             growth: int = 1) -> SearchSpace:
    """MoD-NAS's unfolded U-Net space: ``stages`` (T) unfolding steps, ``levels`` down-samplings per U-Net,
    ``channels`` at full resolution, × ``growth`` per level down."""
    return SearchSpace(mod_unet_graph(stages, levels, channels, layers, image_channels, normal_ops, down_ops, up_ops,
                                      group, residual_denoiser, fusion, growth), "mod_unet")
