"""The gated block: NAFNet's simple-gate block (Chen et al., 2022) without its LayerNorm, as a searchable op.

Two 1×1 convolutions (value and gate), a depthwise 3×3 on each, their product (the simple gate: a
nonlinearity without an activation), simplified channel attention (a 1×1 convolution of the global mean,
multiplying the channels), a 1×1 projection, and a learned 1×1 shortcut of the input (as in
:class:`nasden.core.ops.convolution.ResidualBlock`, so a slimmed block stays exact to extract). It costs
``3·cin·cout + cout² + 18·cout`` multiply-adds per pixel against a 3×3 convolution's ``9·cin·cout``: at
equal FLOPs it is about 1.5× as wide, with a gate and a global view.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.core.ops.base import NM, DynamicOp, Layout
from nasden.core.ops.convolution import DynamicConv, static_depthwise

KERNEL = 3


class GatedBlock(DynamicOp):
    """``project(dw(value(x)) · dw(gate(x)) · attention) + shortcut(x)`` at any input/output width; like a
    convolution it reads a compact input (``layout``: the channels a slim concat carries)."""

    reads_layouts = True

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.value = DynamicConv(cin, cout, kernel=1)
        self.gate = DynamicConv(cin, cout, kernel=1)
        self.value_dw = nn.Parameter(torch.empty(cout, 1, KERNEL, KERNEL))
        self.gate_dw = nn.Parameter(torch.empty(cout, 1, KERNEL, KERNEL))
        for weight in (self.value_dw, self.gate_dw):
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.attention = DynamicConv(cout, cout, kernel=1)
        self.project = DynamicConv(cout, cout, kernel=1)
        self.shortcut = DynamicConv(cin, cout, kernel=1)

    def forward(self, x: Tensor, out: int, nm: NM | None = None, layout: Layout | None = None) -> Tensor:
        value = F.conv2d(self.value(x, out, layout=layout), self.value_dw[:out], padding=KERNEL // 2, groups=out)
        gate = F.conv2d(self.gate(x, out, layout=layout), self.gate_dw[:out], padding=KERNEL // 2, groups=out)
        gated = value * gate
        gated = gated * self.attention(gated.mean((2, 3), keepdim=True), out)
        return self.project(gated, out) + self.shortcut(x, out, layout=layout)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> StaticGatedBlock:
        dense = Layout.dense(out)
        return StaticGatedBlock(self.value.extract(layout, out), self.gate.extract(layout, out),
                                static_depthwise(self.value_dw[:out]), static_depthwise(self.gate_dw[:out]),
                                self.attention.extract(dense, out), self.project.extract(dense, out),
                                self.shortcut.extract(layout, out))

    @classmethod
    def cost(cls, cin: int, cout: int) -> tuple[float, int]:
        """The attention's 1×1 convolution runs once per image on the mean: no multiply-adds per pixel."""
        from_input = DynamicConv.cost(cin, cout, kernel=1)  # value, gate, shortcut
        within = DynamicConv.cost(cout, cout, kernel=1)  # attention, projection
        depthwise = 2 * KERNEL * KERNEL * cout
        return 3 * from_input[0] + within[0] + depthwise, 3 * from_input[1] + 2 * within[1] + depthwise


class StaticGatedBlock(nn.Module):
    """An extracted :class:`GatedBlock`."""

    def __init__(self, value: nn.Module, gate: nn.Module, value_dw: nn.Module, gate_dw: nn.Module,
                 attention: nn.Module, project: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.value, self.gate, self.value_dw, self.gate_dw = value, gate, value_dw, gate_dw
        self.attention, self.project, self.shortcut = attention, project, shortcut

    def forward(self, x: Tensor) -> Tensor:
        gated = self.value_dw(self.value(x)) * self.gate_dw(self.gate(x))
        gated = gated * self.attention(gated.mean((2, 3), keepdim=True))
        return self.project(gated) + self.shortcut(x)
