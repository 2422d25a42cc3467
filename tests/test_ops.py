from __future__ import annotations

import pytest
import torch

from nasden.common.registry import OPS
from nasden.core.ops.base import Layout
from nasden.core.ops.nm import nm_mask, parse_nm


@pytest.mark.parametrize("name", OPS.names())
@pytest.mark.parametrize("size", [8, 16, 12])
def test_every_op_shapes_and_extraction(name: str, size: int) -> None:
    spec = OPS.get(name)
    cin = 16
    cout = cin if spec.preserves_channels else 24
    op = spec.build(cin, cout, ("2:4", "4:4")).eval()
    nm = (4, 4) if spec.per_pattern else None  # one copy per pattern: the pattern picks it
    x = torch.rand(2, 8, size, size)  # a slim input: 8 of 16 channels
    out = 8 if spec.preserves_channels else 16
    y = op(x, out, nm)
    expected = size * 2 if spec.scale < 0 else (size // 2 if spec.scale > 0 else size)
    assert y.shape == (2, out, expected, expected)
    static = op.extract(Layout.dense(8), out, nm).eval()
    torch.testing.assert_close(static(x), y, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cin", [1, 3])
def test_a_convolution_runs_channels_last_whatever_its_input_width(cin: int) -> None:
    # a one-channel image is contiguous in both layouts: the weight alone must tell PyTorch which to run
    conv = OPS.get("conv3x3").build(cin, 16, ())
    y = conv(torch.rand(1, cin, 8, 8).contiguous(memory_format=torch.channels_last), 8)
    assert y.stride(1) == 1 and y.is_contiguous(memory_format=torch.channels_last)


def test_nm_mask_keeps_n_of_every_m_input_channels() -> None:
    w = torch.randn(6, 16, 3, 3)
    for n, m in [(1, 4), (2, 4), (3, 8)]:
        mask = nm_mask(w, n, m)
        groups = mask.permute(0, 2, 3, 1).reshape(-1, m)
        assert torch.all(groups.sum(1) == n)
        kept = (w.abs() * mask).permute(0, 2, 3, 1).reshape(-1, m)
        dropped = (w.abs() * (1 - mask)).permute(0, 2, 3, 1).reshape(-1, m)
        assert torch.all(kept.max(1).values >= dropped.max(1).values)  # magnitude order
    assert nm_mask(w, 4, 4) is None
    assert nm_mask(torch.randn(4, 3, 3, 3), 2, 4) is None  # 3 input channels: stays dense


def test_an_inference_mask_is_cached_until_the_weight_changes() -> None:
    from nasden.core.ops.convolution import DynamicConv
    conv = DynamicConv(8, 8)
    x = torch.rand(1, 8, 6, 6)

    def fresh() -> torch.Tensor:  # the mask recomputed from the weight as it is now
        return torch.nn.functional.conv2d(x, conv.weight * nm_mask(conv.weight.detach(), 2, 4), conv.bias, padding=1)

    with torch.no_grad():
        torch.testing.assert_close(conv(x, 8, (2, 4)), fresh())
        assert len(conv._masks) == 1
        conv.weight.mul_(torch.rand_like(conv.weight))  # an optimiser step or a load: the magnitudes reorder
        torch.testing.assert_close(conv(x, 8, (2, 4)), fresh())
    torch.testing.assert_close(conv(x, 8, (2, 4)), fresh())  # training recomputes it every time


def test_parse_nm() -> None:
    assert parse_nm("2:4") == (2, 4)
    for bad in ("2-4", "0:4", "x:y"):
        with pytest.raises(ValueError):
            parse_nm(bad)


def test_fan_in_correction_keeps_a_slimmed_layer_at_full_scale() -> None:
    from nasden.core.ops.convolution import DynamicConv
    conv = DynamicConv(64, 64, kernel=3, bias=False)
    x = torch.randn(4, 64, 16, 16)
    full = conv(x, 64).std().item()
    quarter = conv(x[:, :16], 64).std().item()  # a quarter of the inputs, rescaled by sqrt(4) = 2
    assert quarter == pytest.approx(full, rel=0.15)
