"""A space written out as nodes and edges, e.g. directly in a recipe's YAML."""
from __future__ import annotations

from typing import Any

from nasden.common.registry import register_space
from nasden.core.space import SearchSpace


@register_space("graph")
def graph(nodes: dict[str, dict[str, Any]], edges: list[list[Any]], residual: bool = False) -> SearchSpace:
    """A graph written out: ``nodes`` (name → op, channels, widths, ...) and ``edges`` ([from, to, attrs?])."""
    return SearchSpace.from_dict({"nodes": nodes, "edges": edges, "residual": residual}, "graph")
