"""DDS-Net's attention head: squeeze, W1, ReLU, W2, 1 + tanh, multiply (Eq. 8-9).

It keeps its input's channels and runs at any width: W1 and W2 are sliced to the active
channels while the reduced dimension stays fixed (``hidden`` = 16, i.e. C/r with the paper's
widest C = 64 and r = 4), so a gate can read the reduced feature ``R = ReLU(W1 U)`` of any
sub-network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.core.ops.base import NM, DynamicOp, Layout


class TanhAttention(nn.Module):
    """Static attention head: ``x * (1 + tanh(W2 ReLU(W1 mean(x))))``."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.reduce = nn.Linear(channels, hidden)
        self.expand = nn.Linear(hidden, channels)

    def reduced(self, x: Tensor) -> Tensor:
        """R = ReLU(W1 U), U the channel means (Eq. 8)."""
        return F.relu(self.reduce(x.mean((2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        scale = 1 + torch.tanh(self.expand(self.reduced(x)))
        return x * scale[:, :, None, None]


class DynamicTanhAttention(DynamicOp):
    """The attention head at its widest; W2 starts at zero so that it starts as the identity."""

    def __init__(self, cin: int, cout: int, hidden: int = 16):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(hidden, cin))
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.w2 = nn.Parameter(torch.zeros(cin, hidden))
        self.b2 = nn.Parameter(torch.zeros(cin))
        nn.init.kaiming_uniform_(self.w1, a=5 ** 0.5)

    def reduced(self, x: Tensor) -> Tensor:
        return F.relu(F.linear(x.mean((2, 3)), self.w1[:, : x.shape[1]], self.b1))

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        c = x.shape[1]
        scale = 1 + torch.tanh(F.linear(self.reduced(x), self.w2[:c], self.b2[:c]))
        return x * scale[:, :, None, None]

    @torch.no_grad()
    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> TanhAttention:
        index = list(layout.positions)
        static = TanhAttention(layout.channels, self.w1.shape[0])
        static.reduce.weight.copy_(self.w1[:, index])
        static.reduce.bias.copy_(self.b1)
        static.expand.weight.copy_(self.w2[index])
        static.expand.bias.copy_(self.b2[index])
        return static

    @classmethod
    def cost(cls, cin: int, cout: int, hidden: int = 16) -> tuple[float, int]:
        # per-image products only: nothing per pixel
        return 0.0, 2 * hidden * cin + hidden + cin
