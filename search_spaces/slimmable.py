"""DDS-Net's slimmable width space over a backbone graph (DnCNN-like or U-Net).

Every hidden layer gets its own width label with widths in multiples of ``group`` from
``min_ratio`` of its channels to all of them (NOTES: rho in [0.2, 1]); layers whose outputs are
added share a label (the backbones here join by concatenation, which needs none). BN-free by
default, as denoisers usually are; with ``bn: true``, recalibrate BatchNorm statistics per
architecture before evaluating (:func:`nasden.core.supernet.recalibrate_bn`; the DDS strategies do).
``attention`` inserts the DDS-Net attention head after the first conv block.
"""
from __future__ import annotations

from typing import Literal

from nasden.common.registry import register_space
from nasden.core.space import SearchSpace
from nasden.search_spaces.backbones import dncnn_graph, unet_graph


@register_space("slimmable")
def slimmable(backbone: Literal["dncnn", "unet"] = "dncnn", channels: int = 64, depth: int | None = None,
              levels: int | None = None, image_channels: int = 1, group: int = 8, min_ratio: float = 0.2,
              bn: bool = False, attention: bool = True) -> SearchSpace:
    """Slimmable width space over a DnCNN-like net (``depth``) or a small U-Net (``levels``)."""
    if backbone == "dncnn":
        if levels is not None:
            raise ValueError("levels applies to backbone 'unet'; the dncnn backbone takes depth")
        graph = dncnn_graph(depth or 17, channels, image_channels, bn, group, min_ratio, attention)
    elif backbone == "unet":
        if depth is not None or bn:
            raise ValueError("the unet backbone takes levels (and no depth or bn)")
        graph = unet_graph(levels or 2, channels, image_channels, group, min_ratio, attention)
    else:
        raise ValueError(f"backbone {backbone!r}: expected 'dncnn' or 'unet'")
    return SearchSpace(graph, "slimmable")
