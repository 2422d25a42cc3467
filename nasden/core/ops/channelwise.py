"""Ops that keep their input's channels: ReLU, identity and BatchNorm with sliced statistics."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.core.ops.base import NM, DynamicOp, Layout
from nasden.core.ops.nm import parse_nm


class ReLU(DynamicOp):
    reads_layouts = True  # per element: a compact input stays compact

    def __init__(self, cin: int, cout: int):
        super().__init__()

    def forward(self, x: Tensor, out: int, nm: NM | None = None, layout: Layout | None = None) -> Tensor:
        return F.relu(x)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Module:
        return nn.ReLU()

    @classmethod
    def cost(cls, cin: int, cout: int) -> tuple[float, int]:
        return 0.0, 0


class Identity(DynamicOp):
    stride, extent, area = 1, 1, 1  # as a 1×1 convolution (see dense_kernel)
    reads_layouts = True  # a compact input stays compact

    def __init__(self, cin: int, cout: int):
        super().__init__()
        # the identity as a 1×1 kernel, kept with the module so it follows its device and dtype
        self.register_buffer("eye", torch.eye(cin)[:, :, None, None], persistent=False)

    def forward(self, x: Tensor, out: int, nm: NM | None = None, layout: Layout | None = None) -> Tensor:
        return x

    def dense_kernel(self, cin: int, out: int) -> tuple[Tensor, None]:
        """The identity as a 1×1 convolution kernel (see :meth:`DynamicConv.dense_kernel`)."""
        return self.eye[:out, :cin], None

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Module:
        return nn.Identity()

    @classmethod
    def cost(cls, cin: int, cout: int) -> tuple[float, int]:
        return 0.0, 0


class DynamicBatchNorm(DynamicOp):
    """BatchNorm over the first ``c`` channels, with the matching slice of running statistics.

    Slimmed sub-networks see different statistics than the full one; recalibrate them per
    architecture with :func:`nasden.core.supernet.recalibrate_bn` before evaluating.
    """

    def __init__(self, cin: int, cout: int, momentum: float | None = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(cin))
        self.bias = nn.Parameter(torch.zeros(cin))
        self.register_buffer("running_mean", torch.zeros(cin))
        self.register_buffer("running_var", torch.ones(cin))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        c = x.shape[1]
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # cumulative moving average, used for recalibration
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, momentum, self.eps)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.BatchNorm2d:
        index = list(layout.positions)
        bn = nn.BatchNorm2d(layout.channels, eps=self.eps)
        bn.weight.data = self.weight[index].detach().clone()
        bn.bias.data = self.bias[index].detach().clone()
        bn.running_mean.copy_(self.running_mean[index])
        bn.running_var.copy_(self.running_var[index])
        return bn.eval()

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    @classmethod
    def cost(cls, cin: int, cout: int, momentum: float | None = 0.1, eps: float = 1e-5) -> tuple[float, int]:
        return 0.0, 2 * cin


class VariableBatchNorm(DynamicOp):
    """Variable BatchNorm (ClassPruning, after DS-Net): one BatchNorm per N:M pattern of the layer, chosen
    with the pattern, since sparser branches see features of other means and variances."""

    def __init__(self, cin: int, cout: int, patterns: tuple[str, ...] = ()):
        super().__init__()
        if not patterns:
            raise ValueError("variable BatchNorm needs the layer's N:M patterns (give the node an nm list)")
        self.norms = nn.ModuleDict({_key(parse_nm(p)): DynamicBatchNorm(cin, cout) for p in patterns})

    def _norm(self, nm: NM | None) -> DynamicBatchNorm:
        if nm is None or _key(nm) not in self.norms:
            raise ValueError(f"variable BatchNorm has statistics for patterns {list(self.norms)}, not {nm}")
        return self.norms[_key(nm)]

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        return self._norm(nm)(x, out)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.BatchNorm2d:
        return self._norm(nm).extract(layout, out)

    @classmethod
    def cost(cls, cin: int, cout: int) -> tuple[float, int]:
        return DynamicBatchNorm.cost(cin, cout)  # a branch uses one of the BatchNorms


def _key(nm: NM) -> str:
    return f"{nm[0]}:{nm[1]}"
