"""A space written out as nodes and edges, e.g. directly in a recipe's YAML."""
from __future__ import annotations

from typing import Any

from nasden.registry import register_space
from nasden.space import SearchSpace


@register_space("graph")
def graph(nodes: dict[str, dict[str, Any]], edges: list[list[Any]], residual: bool = False) -> SearchSpace:
    """``nodes``: name → attributes (op, channels, widths, label, nm, ...); ``edges``: [from, to, {candidate: true}?]."""
    return SearchSpace.from_dict({"nodes": nodes, "edges": edges, "residual": residual}, "graph")
