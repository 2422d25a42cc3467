"""Shape inference: which channels every tensor carries under a discrete architecture."""
from __future__ import annotations

from typing import Any, Collection, Mapping

from nasden.common.registry import OPS
from nasden.core.ops.base import NM, Layout
from nasden.core.ops.nm import parse_nm
from nasden.core.space import Node, SearchSpace


def chosen_input(node: Node, arch: Mapping[str, Any]) -> str:
    """The predecessor a layer reads under ``arch``."""
    return arch[node.input_label] if node.input_label else node.preds[0]


def chosen_op(node: Node, arch: Mapping[str, Any]) -> str:
    return arch[node.op_label] if node.op_label else node.ops[0]


def chosen_width(node: Node, arch: Mapping[str, Any]) -> int:
    return arch[node.width_label] if node.width_label else node.channels


def chosen_nm(node: Node, arch: Mapping[str, Any]) -> NM | None:
    return parse_nm(arch[node.nm_label]) if node.nm_label else None


def live_nodes(space: SearchSpace, arch: Mapping[str, Any], given: Collection[str] = ()) -> set[str]:
    """The nodes the output depends on under ``arch``: a layer reads only its chosen input, so the layers
    a dense depth connection skips are dead. With a relaxed input choice every input is live. Nodes in
    ``given`` are live but what they read is not (their values come from elsewhere)."""
    live: set[str] = set()
    stack = [space.output_node.name]
    while stack:
        name = stack.pop()
        if name in live:
            continue
        live.add(name)
        if name in given:
            continue
        node = space.nodes[name]
        discrete_input = node.input_label is not None and isinstance(arch[node.input_label], str)
        stack.extend([chosen_input(node, arch)] if discrete_input else node.preds)
    return live


def layouts(space: SearchSpace, arch: Mapping[str, Any]) -> dict[str, Layout]:
    """The output :class:`Layout` of every node under the discrete architecture ``arch``."""
    result: dict[str, Layout] = {}
    for node in space.nodes.values():
        if node.kind == "input":
            result[node.name] = Layout.dense(node.channels)
        elif node.kind == "output":
            result[node.name] = result[node.preds[0]]
        elif node.kind == "unfold":
            result[node.name] = Layout.dense(node.channels)
        elif node.kind == "add":
            first = result[node.preds[0]]
            for pred in node.preds[1:]:
                if tuple(result[pred].positions) != tuple(first.positions) or result[pred].length != first.length:
                    raise ValueError(f"add node {node.name!r}: inputs {node.preds[0]!r} and {pred!r} carry "
                                     f"different channels under this architecture")
            result[node.name] = first
        elif node.kind == "concat":
            positions: list[int] = []
            offset = 0
            for pred in node.preds:
                positions.extend(offset + p for p in result[pred].positions)
                offset += space.nodes[pred].channels
            dense = len(positions) == offset
            result[node.name] = Layout.dense(offset) if dense else Layout(positions, offset)
        elif OPS.get(chosen_op(node, arch)).preserves_channels:
            result[node.name] = result[chosen_input(node, arch)]
        else:
            result[node.name] = Layout.dense(chosen_width(node, arch))
    return result
