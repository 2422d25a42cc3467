"""A tiny space with every kind of choice (op, width, input, N:M), strides, skips and BN.

Runs in milliseconds on a CPU; the conformance suite and the core tests use it.
"""
from __future__ import annotations

import networkx as nx

from nasden.common.registry import register_space
from nasden.core.space import SearchSpace


def toy_graph(image_channels: int = 1, channels: int = 8) -> nx.DiGraph:
    c = channels
    g = nx.DiGraph(residual=True)
    g.add_node("input", op="input", channels=image_channels)
    g.add_node("stem", op=["conv3x3", "sepconv3x3", "dilconv3x3"], channels=c, widths=[c // 2, c], label="outer")
    g.add_node("stem_relu", op="relu")
    g.add_node("down", op=["conv3x3_s2", "maxpool_conv1x1", "avgpool_conv1x1"], channels=2 * c, widths=[c, 2 * c])
    g.add_node("down_relu", op="relu")
    g.add_node("up", op=["convT3x3_s2", "bilinear_conv3x3", "nearest_conv3x3", "pixelshuffle_conv3x3"],
               channels=c, widths=[c // 2, c], label="outer")
    g.add_node("skip", op="add")
    g.add_node("mid", op="conv3x3", channels=c, nm=["1:4", "2:4", "4:4"], nm_label="branch")
    g.add_node("mid_bn", op="bn")
    g.add_node("mid_relu", op="relu")
    g.add_node("cat", op="concat")
    g.add_node("head", op=["conv3x3", "conv5x5", "identity"], channels=2 * c)
    g.add_node("tail", op="conv3x3", channels=image_channels, nm=["1:4", "2:4", "4:4"], nm_label="branch")
    g.add_node("output", op="output")
    g.add_edges_from([("input", "stem"), ("stem", "stem_relu"), ("stem_relu", "down"), ("down", "down_relu"),
                      ("down_relu", "up"), ("up", "skip"), ("stem_relu", "skip"), ("mid", "mid_bn"),
                      ("mid_bn", "mid_relu"), ("mid_relu", "cat"), ("stem_relu", "cat"), ("cat", "head"),
                      ("head", "tail"), ("tail", "output")])
    g.add_edge("skip", "mid", candidate=True)
    g.add_edge("stem_relu", "mid", candidate=True)
    return g


@register_space("toy")
def toy(image_channels: int = 1, channels: int = 8) -> SearchSpace:
    """Every kind of choice in a dozen nodes, for tests and for learning the API."""
    return SearchSpace(toy_graph(image_channels, channels), "toy")
