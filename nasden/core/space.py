"""Search spaces declared as graphs, their labelled choices, and architectures.

A space is a ``networkx.DiGraph``. Each node is one of

* ``op: input`` (``channels`` 1 or 3) and ``op: output`` (one predecessor, whose channels are the
  network's output channels), exactly one of each;
* ``op: add`` / ``op: concat``, merging two or more predecessors of equal resolution;
* ``op: unfold``, one step of a model-guided unfolded network (MoD-NAS Eq. 6b),
  ``x_t = x_{t-1} - delta [(x_{t-1} - y) + eta (x_{t-1} - v_t)]`` with learnable scalars: its inputs
  are the network input ``y``, the previous estimate ``x_{t-1}`` (the input itself at t = 1) and the
  denoiser's output ``v_t``, named by the attribute ``denoised``;
* a layer: ``op`` is an op name or a list of candidate op names (an ``op`` choice), ``channels``
  its widest output width, optional ``widths`` (a ``width`` choice), optional ``nm`` patterns such
  as ``["1:4", "2:4", "4:4"]`` (an ``nm`` choice), ``pre_relu: true`` to apply ReLU to its input
  before every candidate op (pre-activation, shared by all candidates). Channel-preserving ops
  (relu, bn, identity) need no ``channels``.

Decisions are labelled ``op:<node>``, ``width:<node>``, ``input:<node>``, ``nm:<node>`` unless
a node sets ``op_label`` / ``label`` (width) / ``nm_label``; nodes with the same label share one
decision (layers joined by a residual add must share their width label). An edge with
``candidate: true`` is a candidate input: a layer whose in-edges are candidates takes exactly one of
them (an ``input`` choice). Graph attribute ``residual: true`` makes the network predict the noise.

An architecture is a plain ``dict[label, value]``; a relaxed one maps labels to probability
vectors (``torch.Tensor``) instead, as differentiable search needs.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import networkx as nx

from nasden.common.errors import NasdenError
from nasden.common.registry import OPS
from nasden.core.ops.nm import density, parse_nm

Architecture = dict[str, Any]
ChoiceKind = Literal["op", "width", "input", "nm"]
MERGES = ("add", "concat")
MAX_CHANNELS = 16384
TERMINALS = ("input", "output")
NOT_LAYERS = MERGES + TERMINALS + ("unfold",)


class SpaceError(NasdenError, ValueError):
    """A graph that is not a valid search space; the message names the node or edge at fault."""


@dataclass(frozen=True)
class Choice:
    """One labelled decision: its kind, its allowed values and the nodes it governs."""

    label: str
    kind: ChoiceKind
    values: tuple
    nodes: tuple[str, ...]

    def largest(self) -> Any:
        """The widest width, densest N:M pattern, first op, last candidate input (topological order)."""
        if self.kind == "width":
            return max(self.values)
        if self.kind == "nm":
            return max(self.values, key=density)
        return self.values[-1] if self.kind == "input" else self.values[0]

    def smallest(self) -> Any:
        """The narrowest width, sparsest N:M pattern, first op, first candidate input."""
        if self.kind == "width":
            return min(self.values)
        if self.kind == "nm":
            return min(self.values, key=density)
        return self.values[0]


@dataclass(frozen=True)
class Node:
    """A validated node: what it computes and which labels decide it."""

    name: str
    kind: Literal["input", "output", "add", "concat", "unfold", "layer"]
    ops: tuple[str, ...]
    channels: int  # widest output channels
    in_channels: int  # widest input channels (0 for the input node)
    preds: tuple[str, ...]
    scale: int  # log2 of the down-sampling factor relative to the input
    candidate_inputs: bool = False
    widths: tuple[int, ...] | None = None
    nm: tuple[str, ...] | None = None
    op_label: str | None = None
    width_label: str | None = None
    input_label: str | None = None
    nm_label: str | None = None
    pre_relu: bool = False

    @property
    def preserves_channels(self) -> bool:
        return self.kind == "layer" and all(OPS.get(op).preserves_channels for op in self.ops)


def _label(given: Any, kind: str, node: str) -> str:
    if given is None:
        return f"{kind}:{node}"
    given = str(given)
    return given if ":" in given else f"{kind}:{given}"


class SearchSpace:
    """A validated graph of layers and the choices it offers."""

    def __init__(self, graph: nx.DiGraph, name: str = "graph"):
        if not isinstance(graph, nx.DiGraph) or isinstance(graph, nx.MultiDiGraph):
            raise SpaceError(f"space {name!r}: expected a networkx.DiGraph, got {type(graph).__name__}")
        self.graph = graph
        self.name = name
        self.residual = bool(graph.graph.get("residual", False))
        self.nodes: dict[str, Node] = _validate(graph, name)
        self.input_node = next(n for n in self.nodes.values() if n.kind == "input")
        self.output_node = next(n for n in self.nodes.values() if n.kind == "output")
        # image sides must be multiples of this (pad before running a U-Net)
        self.resolution_multiple = 2 ** max(node.scale for node in self.nodes.values())
        self.in_channels = self.input_node.channels
        self.out_channels = self.output_node.channels
        if self.residual and self.in_channels != self.out_channels:
            raise SpaceError(f"space {name!r}: residual learning needs equal input and output channels, "
                             f"got {self.in_channels} in and {self.out_channels} out")
        self._choices = _collect_choices(self.nodes.values(), name)

    @property
    def has_batchnorm(self) -> bool:
        """Whether some layer can be BatchNorm (its statistics then need recalibration per architecture)."""
        return any("bn" in node.ops for node in self.nodes.values())

    # -- choices and architectures -------------------------------------------------------------
    def choices(self) -> dict[str, Choice]:
        """Every labelled decision of the space, by label."""
        return dict(self._choices)

    def sample(self, rng: random.Random | int | None = None) -> Architecture:
        """A uniformly random architecture."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return {label: rng.choice(choice.values) for label, choice in self._choices.items()}

    def largest(self) -> Architecture:
        return {label: choice.largest() for label, choice in self._choices.items()}

    def smallest(self) -> Architecture:
        return {label: choice.smallest() for label, choice in self._choices.items()}

    def check(self, arch: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` naming the label if ``arch`` is not an architecture of this space."""
        missing = self._choices.keys() - arch.keys()
        extra = arch.keys() - self._choices.keys()
        if missing or extra:
            raise ValueError(f"architecture does not fit space {self.name!r}: "
                             f"missing labels {sorted(missing)}, unknown labels {sorted(extra)}")
        for label, value in arch.items():
            choice = self._choices[label]
            if hasattr(value, "shape"):  # relaxed: a probability vector, or per-channel width scales
                expected = self.nodes[choice.nodes[0]].channels if choice.kind == "width" else len(choice.values)
                if value.shape != (expected,):
                    raise ValueError(f"relaxed value for {label!r} has shape {tuple(value.shape)}, "
                                     f"expected ({expected},)")
            elif value not in choice.values:
                raise ValueError(f"value {value!r} for {label!r} is not one of {list(choice.values)}")

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly description that :meth:`from_dict` turns back into this space."""
        nodes = {str(n): dict(attrs) for n, attrs in self.graph.nodes(data=True)}
        edges = [[str(u), str(v), dict(attrs)] if attrs else [str(u), str(v)]
                 for u, v, attrs in self.graph.edges(data=True)]
        return {"nodes": nodes, "edges": edges, "residual": self.residual}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], name: str = "graph") -> SearchSpace:
        """Build a space from ``{"nodes": {name: attrs}, "edges": [[u, v] or [u, v, attrs]], "residual": bool}``."""
        if not isinstance(spec, Mapping) or not isinstance(spec.get("nodes"), Mapping):
            raise SpaceError("graph: expected a mapping with 'nodes' (name → attributes) and 'edges'")
        graph = nx.DiGraph(residual=bool(spec.get("residual", False)))
        for node, attrs in spec["nodes"].items():
            if not isinstance(attrs, Mapping):
                raise SpaceError(f"node {node!r}: expected a mapping of attributes, got {attrs!r}")
            graph.add_node(str(node), **attrs)
        for edge in spec.get("edges") or []:
            if not isinstance(edge, (list, tuple)) or len(edge) not in (2, 3) or \
                    (len(edge) == 3 and not isinstance(edge[2], Mapping)):
                raise SpaceError(f"edge {edge!r}: expected [from, to] or [from, to, {{candidate: true}}]")
            for end in edge[:2]:
                if str(end) not in graph:
                    raise SpaceError(f"edge {edge!r}: node {end!r} is not declared under 'nodes'")
            graph.add_edge(str(edge[0]), str(edge[1]), **(edge[2] if len(edge) == 3 else {}))
        return cls(graph, name)

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, {len(self.nodes)} nodes, {len(self._choices)} choices)"


# -- architectures ------------------------------------------------------------------------------
def arch_to_json(arch: Mapping[str, Any]) -> str:
    """Canonical JSON of a discrete architecture (sorted keys)."""
    return json.dumps(dict(arch), sort_keys=True)


def arch_from_json(text: str) -> Architecture:
    return dict(json.loads(text))


def arch_hash(arch: Mapping[str, Any]) -> str:
    """A stable 12-hex-digit hash of a discrete architecture, equal across processes and runs."""
    return hashlib.sha1(arch_to_json(arch).encode()).hexdigest()[:12]


def is_relaxed(arch: Mapping[str, Any]) -> bool:
    return any(hasattr(value, "shape") for value in arch.values())


# -- validation ---------------------------------------------------------------------------------
def _validate(graph: nx.DiGraph, space: str) -> dict[str, Node]:
    for node in graph.nodes:
        if not isinstance(node, str) or not node or "." in node:
            raise SpaceError(f"node {node!r}: names must be non-empty strings without '.'")
        if "op" not in graph.nodes[node]:
            raise SpaceError(f"node {node!r}: missing 'op'")
    for kind in TERMINALS:
        found = [n for n, op in graph.nodes(data="op") if op == kind]
        if len(found) != 1:
            raise SpaceError(f"space {space!r}: expected exactly one '{kind}' node, found {len(found)} {found}")
    try:
        cycle = nx.find_cycle(graph)
        raise SpaceError(f"cycle: {' -> '.join(str(u) for u, _ in cycle)} -> {cycle[0][0]}")
    except nx.NetworkXNoCycle:
        pass
    source = next(n for n, op in graph.nodes(data="op") if op == "input")
    sink = next(n for n, op in graph.nodes(data="op") if op == "output")
    reachable, reaching = nx.descendants(graph, source) | {source}, nx.ancestors(graph, sink) | {sink}
    for node in graph.nodes:
        if node not in reachable:
            raise SpaceError(f"node {node!r}: no path from the input node {source!r}")
        if node not in reaching:
            raise SpaceError(f"node {node!r}: no path to the output node {sink!r}")
    nodes: dict[str, Node] = {}
    for name in nx.lexicographical_topological_sort(graph):
        nodes[name] = _validate_node(graph, name, nodes)
    _check_adds(nodes)
    return nodes


def _validate_node(graph: nx.DiGraph, name: str, done: dict[str, Node]) -> Node:
    attrs = graph.nodes[name]
    op = attrs["op"]
    position = {node: i for i, node in enumerate(done)}
    preds = tuple(sorted(graph.predecessors(name), key=position.__getitem__))  # topological order
    candidate = [bool(graph.edges[p, name].get("candidate", False)) for p in preds]
    if op == "input":
        channels = attrs.get("channels")
        if channels not in (1, 3):
            raise SpaceError(f"input node {name!r}: channels must be 1 (gray) or 3 (RGB), got {channels!r}")
        return Node(name, "input", (), channels, 0, (), 0)
    if any(candidate) and (op in NOT_LAYERS or not all(candidate)):
        raise SpaceError(f"node {name!r}: candidate edges must be all of the in-edges of a layer node")
    if op == "output":
        if len(preds) != 1:
            raise SpaceError(f"output node {name!r}: expected exactly one input, got {len(preds)}")
        pred = done[preds[0]]
        if pred.channels not in (1, 3) or pred.widths is not None:
            raise SpaceError(f"output node {name!r}: its input {pred.name!r} must have a fixed 1 or 3 channels, "
                             f"got {pred.channels}{' with width choices' if pred.widths else ''}")
        if pred.scale != 0:
            raise SpaceError(f"output node {name!r}: input {pred.name!r} is at 1/{2 ** pred.scale} resolution, "
                             f"expected full resolution")
        return Node(name, "output", (), pred.channels, pred.channels, preds, 0)
    if op in MERGES:
        if len(preds) < 2:
            raise SpaceError(f"{op} node {name!r}: expected at least two inputs, got {len(preds)}")
        ins = [done[p] for p in preds]
        for other in ins[1:]:
            if other.scale != ins[0].scale:
                raise SpaceError(f"{op} node {name!r}: input {other.name!r} is at 1/{2 ** other.scale} resolution "
                                 f"but {ins[0].name!r} is at 1/{2 ** ins[0].scale}; expected equal")
            if op == "add" and other.channels != ins[0].channels:
                raise SpaceError(f"add node {name!r}: input {other.name!r} has {other.channels} channels but "
                                 f"{ins[0].name!r} has {ins[0].channels}; expected equal")
        channels = sum(n.channels for n in ins) if op == "concat" else ins[0].channels
        return Node(name, op, (), channels, channels, preds, ins[0].scale)
    if op == "unfold":
        return _validate_unfold(attrs, name, preds, done)
    return _validate_layer(attrs, name, preds, any(candidate), done)


def _validate_unfold(attrs: Mapping[str, Any], name: str, preds: tuple[str, ...], done: dict[str, Node]) -> Node:
    """An unfolding step; its ``preds`` become ``(previous estimate, denoised)``."""
    source = next(n for n in done.values() if n.kind == "input")
    denoised = attrs.get("denoised")
    if denoised not in preds or denoised == source.name:
        raise SpaceError(f"unfold node {name!r}: 'denoised' must name the denoiser output among its inputs "
                         f"{list(preds)}, got {denoised!r}")
    others = [p for p in preds if p not in (denoised, source.name)]
    if source.name not in preds or len(others) > 1:
        raise SpaceError(f"unfold node {name!r}: expected inputs: the input node {source.name!r}, the previous "
                         f"estimate (omit it at the first step) and the denoiser output; got {list(preds)}")
    previous = others[0] if others else source.name
    for pred in (previous, denoised):
        node = done[pred]
        if node.channels != source.channels or node.widths is not None or node.scale != 0:
            raise SpaceError(f"unfold node {name!r}: input {pred!r} must be a fixed {source.channels}-channel "
                             f"image at full resolution")
    return Node(name, "unfold", (), source.channels, source.channels, (previous, denoised), 0)


def _validate_layer(attrs: Mapping[str, Any], name: str, preds: tuple[str, ...], candidate_inputs: bool,
                    done: dict[str, Node]) -> Node:
    ops = tuple(attrs["op"]) if isinstance(attrs["op"], (list, tuple)) else (attrs["op"],)
    if not ops or not all(isinstance(op, str) for op in ops):
        raise SpaceError(f"node {name!r}: op must be an op name or a non-empty list of names, got {attrs['op']!r}")
    for op in ops:
        if op not in OPS:
            raise SpaceError(f"node {name!r}: unknown op {op!r}; known: {', '.join(OPS.names())}")
    specs = [OPS.get(op) for op in ops]
    if len(preds) == 0:
        raise SpaceError(f"node {name!r}: has no input")
    if len(preds) > 1 and not candidate_inputs:
        raise SpaceError(f"node {name!r}: {len(preds)} inputs {list(preds)}; merge them with an add or concat "
                         f"node, or mark the edges candidate")
    ins = [done[p] for p in preds]
    for other in ins[1:]:
        if (other.channels, other.scale) != (ins[0].channels, ins[0].scale):
            raise SpaceError(f"node {name!r}: candidate input {other.name!r} ({other.channels} channels at "
                             f"1/{2 ** other.scale}) differs from {ins[0].name!r} ({ins[0].channels} channels at "
                             f"1/{2 ** ins[0].scale}); expected equal")
    cin, in_scale = ins[0].channels, ins[0].scale
    scales = {spec.scale for spec in specs}
    if len(scales) > 1:
        raise SpaceError(f"node {name!r}: candidate ops {list(ops)} change the resolution differently")
    preserving = any(spec.preserves_channels for spec in specs)
    channels = attrs.get("channels", cin if preserving else None)
    if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= MAX_CHANNELS:
        raise SpaceError(f"node {name!r}: channels must be a positive integer up to {MAX_CHANNELS}, got {channels!r}")
    widths = attrs.get("widths")
    if preserving and (channels != cin or widths is not None):
        raise SpaceError(f"node {name!r}: op(s) {[s.name for s in specs if s.preserves_channels]} keep their input's "
                         f"{cin} channels; expected channels {cin} and no width choices, got {channels}")
    if widths is not None:
        if not isinstance(widths, (list, tuple)) or not widths or \
                not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise SpaceError(f"node {name!r}: widths must be a non-empty list of positive integers, got {widths!r}")
        if max(widths) > channels:
            raise SpaceError(f"node {name!r}: width choice {max(widths)} is larger than its {channels} channels")
        widths = tuple(sorted(set(widths)))
    for spec in specs:
        if cin % spec.in_multiple:
            raise SpaceError(f"node {name!r}: op {spec.name!r} needs input channels that are a multiple of "
                             f"{spec.in_multiple}, got {cin}")
    nm = attrs.get("nm")
    if nm is not None:
        if not isinstance(nm, (list, tuple)) or not nm:
            raise SpaceError(f"node {name!r}: nm must be a list of 'N:M' patterns, got {nm!r}")
        try:
            for pattern in nm:
                parse_nm(pattern)
        except ValueError as err:
            raise SpaceError(f"node {name!r}: {err}") from None
        unsupported = [s.name for s in specs if not s.supports_nm]
        if unsupported:
            raise SpaceError(f"node {name!r}: ops {unsupported} do not support N:M sparsity")
        nm = tuple(str(p) for p in nm)
    pre_relu = attrs.get("pre_relu", False)
    if not isinstance(pre_relu, bool):
        raise SpaceError(f"node {name!r}: pre_relu must be true or false, got {pre_relu!r}")
    return Node(
        name=name, kind="layer", ops=ops, channels=channels, in_channels=cin, preds=preds,
        scale=in_scale + specs[0].scale, candidate_inputs=candidate_inputs, widths=widths, nm=nm,
        op_label=_label(attrs.get("op_label"), "op", name) if len(ops) > 1 else None,
        width_label=_label(attrs.get("label"), "width", name) if widths is not None else None,
        input_label=_label(None, "input", name) if candidate_inputs and len(preds) > 1 else None,
        nm_label=_label(attrs.get("nm_label"), "nm", name) if nm is not None else None, pre_relu=pre_relu,
    )


def width_source(nodes: Mapping[str, Node], name: str) -> tuple[str | None, int]:
    """The width label (or None when fixed) and widest channels that decide a node's output width."""
    node = nodes[name]
    while node.kind == "add" or node.preserves_channels:
        node = nodes[node.preds[0]]
    return node.width_label, node.channels


def _check_adds(nodes: Mapping[str, Node]) -> None:
    for node in nodes.values():
        if node.kind != "add":
            continue
        sources = {p: width_source(nodes, p) for p in node.preds}
        if len(set(sources.values())) > 1:
            found = ", ".join(f"{p!r}: {label or 'fixed'}" for p, (label, _) in sources.items())
            raise SpaceError(f"add node {node.name!r}: its inputs must share one width label ({found})")


def _collect_choices(nodes: Any, space: str) -> dict[str, Choice]:
    collected: dict[str, tuple[ChoiceKind, tuple, list[str]]] = {}

    def add(label: str | None, kind: ChoiceKind, values: tuple, node: str) -> None:
        if label is None:
            return
        if label in collected:
            known_kind, known_values, owners = collected[label]
            if (known_kind, known_values) != (kind, values):
                raise SpaceError(f"node {node!r}: label {label!r} is shared with {owners[0]!r} but offers "
                                 f"{kind} {list(values)} instead of {known_kind} {list(known_values)}")
            owners.append(node)
        else:
            collected[label] = (kind, values, [node])

    for node in nodes:
        add(node.op_label, "op", node.ops, node.name)
        add(node.width_label, "width", node.widths or (), node.name)
        add(node.input_label, "input", node.preds, node.name)
        add(node.nm_label, "nm", node.nm or (), node.name)
    return {label: Choice(label, kind, values, tuple(owners)) for label, (kind, values, owners) in collected.items()}


def width_choices(channels: int, group: int = 8, min_ratio: float = 0.25) -> list[int]:
    """Widths that are multiples of ``group`` from ``min_ratio * channels`` (rounded up) to ``channels``."""
    if group < 1 or channels % group:
        raise SpaceError(f"channels {channels} is not a multiple of the width group {group}")
    if not 0 < min_ratio <= 1:
        raise SpaceError(f"min_ratio must be in (0, 1], got {min_ratio}")
    first = max(1, math.ceil(min_ratio * channels / group - 1e-9))
    return [group * k for k in range(first, channels // group + 1)]
