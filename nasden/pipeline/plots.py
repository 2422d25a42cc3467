"""Figures a person would rather look at than read: PSNR against FLOPs, a drawing of a network."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import networkx as nx
from matplotlib.figure import Figure

from nasden.common.atomic import atomic_write
from nasden.core.shapes import chosen_input, chosen_op, chosen_width, live_nodes
from nasden.core.space import Architecture, SearchSpace


def psnr_flops_figure(series: dict[str, Sequence[tuple[float, float]]], title: str,
                      scattered: Sequence[str] = ()) -> Figure:
    """One line per series of (FLOPs/pixel, PSNR) points; the series named in ``scattered`` as points only."""
    figure = Figure(figsize=(6, 4), dpi=110)  # not pyplot: nothing global keeps it open
    axes = figure.subplots()
    for name, points in series.items():
        if not points:
            continue
        flops, psnr = zip(*sorted(points))
        style = {"linestyle": "none", "marker": "D", "markersize": 5} if name in scattered \
            else {"marker": "o", "markersize": 3}
        axes.plot([f / 1e3 for f in flops], psnr, label=name, **style)
    axes.set_xlabel("FLOPs per pixel (thousands)")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"), suffix=".png")
    return path


def network_figure(space: SearchSpace, arch: Architecture, title: str) -> Figure:
    """A drawing of the layers ``arch`` uses: left to right in topological order, one row per resolution,
    each layer labelled with its op and width; merges and unfolding steps as small grey nodes."""
    live = live_nodes(space, arch)
    names = [name for name in space.nodes if name in live]
    graph = nx.DiGraph()
    for name in names:
        node = space.nodes[name]
        graph.add_node(name)
        sources = [chosen_input(node, arch)] if node.kind == "layer" else list(node.preds)
        graph.add_edges_from((source, name) for source in sources if source in live)
    position = {name: (i, -2.5 * space.nodes[name].scale) for i, name in enumerate(names)}
    layers = [n for n in names if space.nodes[n].kind == "layer"]
    labels = {n: f"{chosen_op(space.nodes[n], arch)}\n{chosen_width(space.nodes[n], arch)}" for n in layers}
    labels.update({n: space.nodes[n].kind for n in names if n not in labels})
    rows = space.resolution_multiple.bit_length()
    figure = Figure(figsize=(max(6.0, 0.45 * len(names)), 1.5 + 1.6 * rows), dpi=110)
    axes = figure.subplots()
    nx.draw_networkx_edges(graph, position, ax=axes, arrows=True, arrowsize=8, width=0.8,
                           connectionstyle="arc3,rad=0.15", edge_color="#777")
    nx.draw_networkx_nodes(graph, position, nodelist=layers, ax=axes, node_size=260, node_color="#4c8bd6")
    nx.draw_networkx_nodes(graph, position, nodelist=[n for n in names if n not in layers], ax=axes,
                           node_size=90, node_color="#bbb")
    for name, (x, y) in position.items():
        axes.text(x, y - 0.18, labels[name], fontsize=5.5, ha="center", va="top", rotation=90)
    axes.set_title(title, fontsize=9)
    axes.set_ylim(-2.5 * rows - 0.2, 0.4)
    axes.axis("off")
    figure.tight_layout()
    return figure
