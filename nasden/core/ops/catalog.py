"""The built-in ops, registered by name (``conv3x3``, ``sepconv5x5``, ``bilinear_conv3x3`` ...)."""
from __future__ import annotations

from nasden.common.registry import OPS
from nasden.core.ops.attention import DynamicTanhAttention
from nasden.core.ops.base import OpSpec
from nasden.core.ops.channelwise import DynamicBatchNorm, Identity, ReLU, VariableBatchNorm
from nasden.core.ops.convolution import (
    DynamicConv,
    DynamicConvTranspose,
    InterpolateConv,
    PoolConv,
    ResidualBlock,
    SeparableConv,
    ShuffleConv,
    UnshuffleConv,
)
from nasden.core.ops.gated import GatedBlock


def _register(spec: OpSpec) -> None:
    OPS.register(spec.name)(spec)


for _k in (1, 3, 5, 7):
    _register(OpSpec(f"conv{_k}x{_k}", DynamicConv, {"kernel": _k}, supports_nm=True))
for _k in (3, 5):
    _register(OpSpec(f"dilconv{_k}x{_k}", DynamicConv, {"kernel": _k, "dilation": 2}, supports_nm=True))
    _register(OpSpec(f"sepconv{_k}x{_k}", SeparableConv, {"kernel": _k}, supports_nm=True))
    _register(OpSpec(f"conv{_k}x{_k}_s2", DynamicConv, {"kernel": _k, "stride": 2}, scale=1, supports_nm=True))
_register(OpSpec("maxpool_conv1x1", PoolConv, {"pool": "max"}, scale=1, supports_nm=True))
_register(OpSpec("avgpool_conv1x1", PoolConv, {"pool": "avg"}, scale=1, supports_nm=True))
_register(OpSpec("unshuffle_conv3x3", UnshuffleConv, scale=1, supports_nm=True))
_register(OpSpec("convT3x3_s2", DynamicConvTranspose, {"kernel": 3}, scale=-1))
for _mode in ("bilinear", "nearest", "area"):  # up: interpolate 2×, then conv 3×3; down: ½×, then conv 3×3
    _register(OpSpec(f"{_mode}_conv3x3", InterpolateConv, {"mode": _mode}, scale=-1, supports_nm=True))
    _register(OpSpec(f"{_mode}_down_conv3x3", InterpolateConv, {"mode": _mode, "factor": 0.5}, scale=1,
                     supports_nm=True))
_register(OpSpec("resblock3x3", ResidualBlock))
_register(OpSpec("gated3x3", GatedBlock))
_register(OpSpec("pixelshuffle_conv3x3", ShuffleConv, scale=-1, in_multiple=4, supports_nm=True))
_register(OpSpec("relu", ReLU, preserves_channels=True))
_register(OpSpec("identity", Identity, preserves_channels=True))
_register(OpSpec("bn", DynamicBatchNorm, preserves_channels=True))
_register(OpSpec("vbn", VariableBatchNorm, preserves_channels=True, supports_nm=True, per_pattern=True))
_register(OpSpec("attention", DynamicTanhAttention, {"hidden": 16}, preserves_channels=True))
