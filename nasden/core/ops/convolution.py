"""Convolutions that keep their widest weights and slice ``weight[:out, :in]`` at forward time.

The slice is laid out channels-last before the convolution: oneDNN then runs it, and the activations
after it, in the layout the extracted networks use (``bench/shared_weights.py`` measures a candidate run
this way against its extracted network). ``Tensor.to(memory_format=...)``, not ``contiguous``: a weight
reading one input channel is contiguous in both layouts, ``contiguous`` keeps its NCHW strides, and
PyTorch then runs that convolution and its output in NCHW (at 256² a gray image's first layer took 4×
its extracted twin's time, and the next layer paid for converting the output back).

A slice reading ``in`` of ``in_max`` input channels is multiplied by ``sqrt(in_max / in)``, so a
slimmed layer's outputs keep the scale the full layer's have (a fan-in correction). Without it,
a BN-free sub-network at width ratio rho shrinks its signal by about sqrt(rho) per layer: at 25%
width a 17-layer DnCNN outputs its input unchanged and cannot be trained jointly with the full
network. The correction is a fixed reparametrisation: extraction bakes it into the weights.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.core.ops.base import NM, DynamicOp, Layout
from nasden.core.ops.nm import NMGradient, apply_nm, nm_mask


def fan_in_scale(active: int, widest: int) -> float:
    """The factor that gives a layer reading ``active`` of ``widest`` input channels the full layer's scale."""
    return 1.0 if active == widest else math.sqrt(widest / active)


def _static_weight(weight: Tensor, layout: Layout, out: int, nm: NM | None) -> Tensor:
    """The slice of a ``[out, in, ...]`` weight a static layer needs: N:M mask and fan-in scale applied."""
    w = apply_nm(weight[:out, : layout.length], nm) * fan_in_scale(layout.length, weight.shape[1])
    if not (isinstance(layout.positions, range) and layout.positions == range(layout.length)):
        w = w[:, list(layout.positions)]
    return w.detach().clone()


class DynamicConv(DynamicOp):
    """k×k convolution (optionally strided or dilated) that runs at any input/output width, with an
    optional N:M mask trained through by ``nm_gradient`` (:func:`nasden.core.ops.nm.set_nm_gradient`)."""

    reads_layouts = True

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 bias: bool = True):
        super().__init__()
        self.kernel, self.stride, self.dilation = kernel, stride, dilation
        self.padding = dilation * (kernel - 1) // 2
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.nm_gradient = NMGradient()
        # inference: (out, in, nm, device) → (the weight's version, its N:M mask as bools), kept while the weight
        # is unchanged
        self._masks: dict[tuple[Any, ...], tuple[int, Tensor | None]] = {}
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def _masked(self, weight: Tensor, nm: NM | None) -> Tensor:
        """``weight`` under its N:M mask: recomputed at every training step, cached for inference."""
        if nm is None or torch.is_grad_enabled():
            return apply_nm(weight, nm, self.nm_gradient)
        key, version = (weight.shape[0], weight.shape[1], nm, weight.device), self.weight._version
        cached = self._masks.get(key)
        if cached is None or cached[0] != version:
            mask = nm_mask(weight, *nm)
            cached = self._masks[key] = (version, None if mask is None else mask.bool())
        return weight if cached[1] is None else weight * cached[1]

    def forward(self, x: Tensor, out: int, nm: NM | None = None, layout: Layout | None = None) -> Tensor:
        """``layout``: ``x`` carries only these channels of a ``layout.length``-channel input (the rest zeros,
        left out; the supernet's compact concat): the weight's matching columns run."""
        cin = x.shape[1] if layout is None else layout.length
        weight = self._masked(self.weight[:out, :cin], nm)
        if cin != self.weight.shape[1]:
            weight = weight * fan_in_scale(cin, self.weight.shape[1])
        if layout is not None:
            weight = weight[:, layout.positions]
        bias = None if self.bias is None else self.bias[:out]
        weight = weight.to(memory_format=torch.channels_last)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    @property
    def extent(self) -> int:
        """The side of the window one output pixel reads (the dilated kernel size)."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def area(self) -> int:
        """Multiply-adds per input/output channel pair and pixel."""
        return self.kernel * self.kernel

    def dense_kernel(self, cin: int, out: int) -> tuple[Tensor, Tensor | None]:
        """The full-width weight as an undilated ``[out, cin, K, K]`` kernel (K its dilated extent) and the bias.

        Zero-stuffing a dilated kernel keeps it centred, so kernels of one stride can be summed
        after centre-padding (the collapse in :mod:`nasden.core.ops.mixed`).
        """
        weight = self.weight[:out, :cin] * fan_in_scale(cin, self.weight.shape[1])
        if self.dilation > 1:
            stuffed = weight.new_zeros(out, cin, self.extent, self.extent)
            stuffed[..., :: self.dilation, :: self.dilation] = weight
            weight = stuffed
        return weight, None if self.bias is None else self.bias[:out]

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Conv2d:
        conv = nn.Conv2d(layout.channels, out, self.kernel, self.stride, self.padding, self.dilation,
                         bias=self.bias is not None)
        conv.weight.data = _static_weight(self.weight, layout, out, nm)
        if self.bias is not None:
            conv.bias.data = self.bias[:out].detach().clone()
        return conv

    @classmethod
    def cost(cls, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
             bias: bool = True) -> tuple[float, int]:
        macs = kernel * kernel * cin * cout
        return float(macs), macs + (cout if bias else 0)


class DynamicConvTranspose(DynamicOp):
    """Transposed convolution with stride 2 (doubles the resolution) at any width."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(cin, cout, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def _geometry(self) -> dict[str, int]:
        return {"stride": 2, "padding": (self.kernel - 1) // 2, "output_padding": 1}

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        weight = self.weight[: x.shape[1], :out] * fan_in_scale(x.shape[1], self.weight.shape[0])
        return F.conv_transpose2d(x, weight, self.bias[:out], **self._geometry())

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.ConvTranspose2d:
        conv = nn.ConvTranspose2d(layout.channels, out, self.kernel, **self._geometry())
        scale = fan_in_scale(layout.length, self.weight.shape[0])
        conv.weight.data = (self.weight[list(layout.positions), :out] * scale).detach().clone()
        conv.bias.data = self.bias[:out].detach().clone()
        return conv

    @classmethod
    def cost(cls, cin: int, cout: int, kernel: int = 3) -> tuple[float, int]:
        # one k×k×cin×cout product per *input* pixel; an output pixel is a quarter of one
        macs = kernel * kernel * cin * cout
        return macs / 4, macs + cout


def static_depthwise(weight: Tensor) -> nn.Conv2d:
    """A depthwise convolution ("same" padding, no bias) holding a copy of ``weight`` ``[channels, 1, k, k]``."""
    channels, kernel = weight.shape[0], weight.shape[-1]
    conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False)
    conv.weight.data = weight.detach().clone()
    return conv


class SeparableConv(DynamicOp):
    """Depthwise k×k convolution followed by a pointwise 1×1 convolution."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.kernel = kernel
        self.depthwise = nn.Parameter(torch.empty(cin, 1, kernel, kernel))
        nn.init.kaiming_uniform_(self.depthwise, a=math.sqrt(5))
        self.pointwise = DynamicConv(cin, cout, kernel=1)

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        channels = x.shape[1]
        x = F.conv2d(x, self.depthwise[:channels], padding=self.kernel // 2, groups=channels)
        return self.pointwise(x, out, nm)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Sequential:
        return nn.Sequential(static_depthwise(self.depthwise[list(layout.positions)]),
                             self.pointwise.extract(layout, out, nm))

    @classmethod
    def cost(cls, cin: int, cout: int, kernel: int = 3) -> tuple[float, int]:
        depthwise = kernel * kernel * cin
        return float(depthwise + cin * cout), depthwise + cin * cout + cout


class PoolConv(DynamicOp):
    """2×2 max or average pooling (halves the resolution) followed by a 1×1 convolution."""

    def __init__(self, cin: int, cout: int, pool: str = "max"):
        super().__init__()
        self.pool = pool
        self.conv = DynamicConv(cin, cout, kernel=1)

    def _pool(self) -> nn.Module:
        return nn.MaxPool2d(2) if self.pool == "max" else nn.AvgPool2d(2)

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        x = F.max_pool2d(x, 2) if self.pool == "max" else F.avg_pool2d(x, 2)
        return self.conv(x, out, nm)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Sequential:
        return nn.Sequential(self._pool(), self.conv.extract(layout, out, nm))

    @classmethod
    def cost(cls, cin: int, cout: int, pool: str = "max") -> tuple[float, int]:
        return DynamicConv.cost(cin, cout, kernel=1)


class InterpolateConv(DynamicOp):
    """Interpolation by ``factor`` (2: up, 0.5: down; ``mode`` nearest, bilinear or area) followed by a 3×3
    convolution for the channels (MoD-NAS: "each interpolation operation is followed by a convolution")."""

    def __init__(self, cin: int, cout: int, mode: str = "bilinear", factor: float = 2.0):
        super().__init__()
        self.mode, self.factor = mode, factor
        self.conv = DynamicConv(cin, cout, kernel=3)

    def _align(self) -> bool | None:
        return False if self.mode == "bilinear" else None

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        x = F.interpolate(x, scale_factor=self.factor, mode=self.mode, align_corners=self._align())
        return self.conv(x, out, nm)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Sequential:
        resize = nn.Upsample(scale_factor=self.factor, mode=self.mode, align_corners=self._align())
        return nn.Sequential(resize, self.conv.extract(layout, out, nm))

    @classmethod
    def cost(cls, cin: int, cout: int, mode: str = "bilinear", factor: float = 2.0) -> tuple[float, int]:
        return DynamicConv.cost(cin, cout, kernel=3)


class StaticResidualBlock(nn.Module):
    """``second(relu(first(x))) + shortcut(x)``: an extracted :class:`ResidualBlock`."""

    def __init__(self, first: nn.Module, second: nn.Module, shortcut: nn.Module):
        super().__init__()
        self.first, self.second, self.shortcut = first, second, shortcut

    def forward(self, x: Tensor) -> Tensor:
        return self.second(F.relu(self.first(x))) + self.shortcut(x)


class ResidualBlock(DynamicOp):
    """conv 3×3 → ReLU → conv 3×3, plus a 1×1 convolution of the input: the residual block of MoD-NAS's
    searched networks (appendix, tables 7-8; its most frequent normal op). The paper does not draw the
    block; its rows change width (e.g. 28 → 40), so the shortcut here is a learned 1×1 projection, which
    also keeps a slimmed block exact to extract."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.first = DynamicConv(cin, cout, kernel=3)
        self.second = DynamicConv(cout, cout, kernel=3)
        self.shortcut = DynamicConv(cin, cout, kernel=1)

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        return self.second(F.relu(self.first(x, out)), out) + self.shortcut(x, out)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> StaticResidualBlock:
        return StaticResidualBlock(self.first.extract(layout, out), self.second.extract(Layout.dense(out), out),
                                   self.shortcut.extract(layout, out))

    @classmethod
    def cost(cls, cin: int, cout: int) -> tuple[float, int]:
        parts = [DynamicConv.cost(cin, cout), DynamicConv.cost(cout, cout), DynamicConv.cost(cin, cout, kernel=1)]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)


class ShuffleConv(DynamicOp):
    """Pixel shuffle (2×, channels / 4) followed by a 3×3 convolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = DynamicConv(cin // 4, cout, kernel=3)

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        return self.conv(F.pixel_shuffle(x, 2), out, nm)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Sequential:
        positions = list(layout.positions)
        groups = [positions[i: i + 4] for i in range(0, len(positions), 4)]
        if any(group != list(range(group[0], group[0] + 4)) or group[0] % 4 for group in groups):
            raise ValueError("pixel shuffle needs its input channels in complete groups of 4")
        shuffled = Layout([group[0] // 4 for group in groups], layout.length // 4)
        return nn.Sequential(nn.PixelShuffle(2), self.conv.extract(shuffled, out, nm))

    @classmethod
    def cost(cls, cin: int, cout: int) -> tuple[float, int]:
        return DynamicConv.cost(cin // 4, cout, kernel=3)


class UnshuffleConv(DynamicOp):
    """Pixel unshuffle (½×, channels × 4) followed by a 3×3 convolution: FFDNet's way down."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = DynamicConv(cin * 4, cout, kernel=3)

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:
        return self.conv(F.pixel_unshuffle(x, 2), out, nm)

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Sequential:
        unshuffled = Layout([4 * p + i for p in layout.positions for i in range(4)], 4 * layout.length)
        return nn.Sequential(nn.PixelUnshuffle(2), self.conv.extract(unshuffled, out, nm))

    @classmethod
    def cost(cls, cin: int, cout: int) -> tuple[float, int]:
        return DynamicConv.cost(cin * 4, cout, kernel=3)
