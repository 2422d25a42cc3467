"""The weight-sharing supernet: a space compiled into one module that runs any architecture."""
from __future__ import annotations

import copy
import itertools
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.common.registry import OPS
from nasden.core.ops.base import Layout
from nasden.core.ops.channelwise import DynamicBatchNorm
from nasden.core.ops.mixed import MixedOp
from nasden.core.ops.nm import parse_nm
from nasden.core.ops.unfold import UnfoldStep
from nasden.core.shapes import chosen_input, chosen_op, live_nodes
from nasden.core.space import Architecture, Node, SearchSpace


def last_uses(order: list[str], preds: Mapping[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """For each node, the tensors that no later node reads (free them once it has run)."""
    last: dict[str, str] = {}
    for name in order:
        for pred in preds[name]:
            last[pred] = name
    frees: dict[str, list[str]] = {name: [] for name in order}
    for tensor, consumer in last.items():
        frees[consumer].append(tensor)
    return frees


def _pad_channels(x: Tensor, channels: int) -> Tensor:
    return x if x.shape[1] == channels else F.pad(x, (0, 0, 0, 0, 0, channels - x.shape[1]))


def _padded(values: Mapping[str, Tensor], compact: Mapping[str, Layout], name: str) -> Tensor:
    """Node ``name``'s output, with the channels a compact concat left out put back as zeros."""
    value = values[name]
    if name not in compact:
        return value
    layout = compact[name]
    full = value.new_zeros(value.shape[0], layout.length, *value.shape[2:])
    full[:, list(layout.positions)] = value
    return full


def _weighted_sum(tensors: list[Tensor], weights: Tensor | None = None) -> Tensor:
    channels = max(t.shape[1] for t in tensors)
    total: Tensor | None = None
    for i, t in enumerate(tensors):
        t = _pad_channels(t, channels)
        if weights is not None:
            t = weights[i] * t
        total = t if total is None else total + t
    assert total is not None
    return total


class Supernet(nn.Module):
    """Every candidate of every layer at its widest; ``supernet(x, arch)`` runs one architecture.

    ``arch`` may be discrete (labels → values) or relaxed (labels → probability vectors for op and
    input choices, per-channel scales for width choices). Without ``arch`` it runs the one set by
    :meth:`active`, else the largest.
    """

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.layers = nn.ModuleDict({
            node.name: MixedOp(node.ops, node.in_channels, node.channels, node.pre_relu, node.nm or ())
            for node in space.nodes.values() if node.kind == "layer"
        })
        self.unfold = nn.ModuleDict({node.name: UnfoldStep() for node in space.nodes.values() if node.kind == "unfold"})
        order = list(space.nodes)
        self._frees = last_uses(order, {name: space.nodes[name].preds for name in order})
        self._active: Architecture | None = None
        self._largest = space.largest()
        self._input_labels = any(choice.kind == "input" for choice in space.choices().values())

    @contextmanager
    def active(self, arch: Architecture) -> Iterator[Supernet]:
        """Run ``arch`` on every call inside the ``with`` block."""
        self.space.check(arch)
        previous, self._active = self._active, dict(arch)
        try:
            yield self
        finally:
            self._active = previous

    def restrict(self, archs: Sequence[Architecture]) -> Supernet:
        """A copy holding only what some of ``archs`` runs: the candidate ops they choose in the layers they
        reach (a shared network to deploy; architectures outside ``archs`` may no longer run on it)."""
        used: dict[str, set[str]] = {}
        for arch in archs:
            self.space.check(arch)
            for name in live_nodes(self.space, arch):
                node = self.space.nodes[name]
                if node.kind == "layer":
                    used.setdefault(name, set()).add(chosen_op(node, arch))
        restricted = copy.deepcopy(self)
        for name in list(restricted.layers):
            if name in used:
                restricted.layers[name].keep(used[name])
            else:
                del restricted.layers[name]
        return restricted

    def forward(self, x: Tensor, arch: Mapping[str, Any] | None = None,
                given: Mapping[str, Tensor] | None = None) -> Tensor:
        """Run ``arch``; ``given``: node outputs computed elsewhere (the nodes only they read are skipped)."""
        if arch is None:
            arch = self._active if self._active is not None else self._largest
        else:
            self.space.check(arch)
        if x.shape[1] != self.space.in_channels:
            raise ValueError(f"space {self.space.name!r} takes {self.space.in_channels}-channel images, "
                             f"got a tensor of shape {tuple(x.shape)}")
        given = given or {}
        live = live_nodes(self.space, arch, given) if self._input_labels or given else None
        values: dict[str, Tensor] = {}
        compact: dict[str, Layout] = {}  # concat outputs that leave their slim inputs' missing (zero) channels out
        for name, node in self.space.nodes.items():
            if name in given:
                values[name] = given[name]
            elif live is None or name in live:
                values[name] = self._node(node, x, values, compact, arch)
            for dead in self._frees[name]:
                values.pop(dead, None)
                compact.pop(dead, None)
        out = _padded(values, compact, self.space.output_node.name)
        return x - out if self.space.residual else out

    def _node(self, node: Node, x: Tensor, values: dict[str, Tensor], compact: dict[str, Layout],
              arch: Mapping[str, Any]) -> Tensor:
        def read(name: str) -> Tensor:
            return _padded(values, compact, name)

        if node.kind == "input":
            return x
        if node.kind == "output":
            return read(node.preds[0])
        if node.kind == "add":
            return _weighted_sum([read(p) for p in node.preds])
        if node.kind == "unfold":
            return self.unfold[node.name](read(node.preds[0]), read(node.preds[1]), x)
        if node.kind == "concat":
            return self._concat(node, [read(p) for p in node.preds], compact)
        op = arch[node.op_label] if node.op_label else node.ops[0]
        width = arch[node.width_label] if node.width_label else node.channels
        nm = parse_nm(arch[node.nm_label]) if node.nm_label else None
        layer = self.layers[node.name]
        if node.input_label and isinstance(arch[node.input_label], Tensor):
            return layer(_weighted_sum([read(p) for p in node.preds], arch[node.input_label]), op, width, nm)
        source = chosen_input(node, arch)
        if source in compact and layer.reads_layouts(op) and not isinstance(width, Tensor):
            if OPS.get(op).preserves_channels:  # ReLU, identity: the output leaves out what the input did
                compact[node.name] = compact[source]
            return layer(values[source], op, width, nm, compact[source])  # the zero channels never run
        return layer(read(source), op, width, nm)

    def _concat(self, node: Node, parts: list[Tensor], compact: dict[str, Layout]) -> Tensor:
        """``parts`` side by side; where some are slim (fewer channels than their node's), the output leaves
        their missing channels out instead of zero-padding them, and its layout goes to ``compact``."""
        widths = [self.space.nodes[p].channels for p in node.preds]
        if any(part.shape[1] != width for part, width in zip(parts, widths)):
            positions: list[int] = []
            for offset, part in zip(itertools.accumulate([0, *widths]), parts):
                positions.extend(range(offset, offset + part.shape[1]))
            compact[node.name] = Layout(positions, sum(widths))
        return torch.cat(parts, 1)


@torch.no_grad()
def recalibrate_bn(supernet: Supernet, arch: Architecture, batches: Iterable[Tensor]) -> int:
    """Recompute BatchNorm running statistics for ``arch`` from ``batches`` (US-Net's calibration).

    The statistics are a plain average over the batches. Returns the number of batches used.
    """
    norms = [m for m in supernet.modules() if isinstance(m, DynamicBatchNorm)]
    if not norms:
        return 0
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    count = 0
    try:
        for batch in batches:
            supernet(batch, arch)
            count += 1
    finally:
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
    return count
