from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasden.common.registry import SPACES
from nasden.core.cost import cost, measure_latency
from nasden.core.extract import export_torchscript, extract
from nasden.core.supernet import Supernet, recalibrate_bn

SPACE_OPTIONS = {  # small settings for every registered space
    "toy": [{}, {"image_channels": 3}],
    "dncnn": [{"depth": 5, "channels": 16, "group": 8}, {"depth": 4, "channels": 8, "bn": False},
              {"depth": 4, "channels": 8, "bn": False, "ops": ["conv3x3", "conv5x5", "dilconv3x3", "identity"]}],
    "nm_branches": [{"depth": 4, "channels": 8}, {"depth": 3, "channels": 8, "variable_bn": False},
                    {"backbone": "unet", "levels": 1, "channels": 8}],
    "mod_unet": [{"stages": 2, "levels": 1, "channels": 8, "layers": 3},
                 {"levels": 1, "channels": 4, "layers": 2, "growth": 2, "group": 4,
                  "normal_ops": ["conv3x3", "gated3x3"]}],
    "unet": [{"levels": 2, "channels": 8, "group": 8}, {"levels": 2, "channels": 4, "group": 4, "convs": [1, 2, 3]},
             {"levels": 1, "channels": 8, "group": 4, "convs": 1, "bn": True},
             {"levels": 1, "channels": 8, "group": 4, "op": "gated3x3", "convs": [1, 2]}],
    "graph": [SPACES.get("toy")().to_dict()],
    "ffdnet": [{"depth": 4, "channels": 8}, {"depth": 3, "channels": 16, "group": 8}],
    "slimmable": [{"depth": 4, "channels": 16}, {"backbone": "unet", "levels": 1, "channels": 16},
                  {"depth": 3, "channels": 16, "bn": True, "attention": False}],
}


def _spaces() -> list:
    params = []
    for name in SPACES.names():
        for options in SPACE_OPTIONS.get(name, [{}]):
            params.append(pytest.param(name, options, id=f"{name}-{len(options)}"))
    return params


def test_every_registered_space_is_covered() -> None:
    assert set(SPACES.names()) <= set(SPACE_OPTIONS)


def _archs(space, n=12):
    return [space.largest(), space.smallest()] + [space.sample(seed) for seed in range(n)]


@pytest.mark.parametrize("name, options", _spaces())
def test_extract_equals_supernet(name: str, options: dict) -> None:
    space = SPACES.get(name)(**options)
    supernet = Supernet(space)
    x = torch.rand(2, space.in_channels, 16, 24)
    supernet.train()
    for arch in _archs(space):
        supernet(x, arch)  # moves BN statistics away from their initial values
    supernet.eval()
    for arch in _archs(space):
        static = extract(supernet, arch).eval()
        torch.testing.assert_close(static(x), supernet(x, arch), atol=1e-5, rtol=0)
        assert not any("candidates" in n for n, _ in static.named_modules())


@pytest.mark.parametrize("name, options", _spaces())
def test_cost_matches_flop_counter_and_parameters(name: str, options: dict) -> None:
    space = SPACES.get(name)(**options)
    supernet = Supernet(space)
    x = torch.rand(1, space.in_channels, 32, 32)
    for arch in _archs(space, 6):
        arch = {k: ("4:4" if k.startswith("nm:") else v) for k, v in arch.items()}  # counter sees dense convs
        static = extract(supernet, arch)
        with FlopCounterMode(display=False) as counter:
            static(x)
        measured = counter.get_total_flops() / (32 * 32)
        predicted = cost(space, arch)
        assert predicted.flops_per_pixel == pytest.approx(measured, rel=0.01)
        assert predicted.params == sum(p.numel() for p in static.parameters())


@pytest.mark.parametrize("name, options", _spaces())
def test_supernet_runs_an_architecture_at_its_extracted_networks_flops(name: str, options: dict) -> None:
    """A slim input to a concat costs the supernet nothing: the channels it lacks are left out, not zero-padded
    and convolved (the shared-weight dynamic denoiser runs every candidate this way)."""
    space = SPACES.get(name)(**options)
    supernet = Supernet(space).eval()
    x = torch.rand(1, space.in_channels, 32, 32)

    def flops(run) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            run()
        return counter.get_total_flops()

    for arch in _archs(space, 6):
        static = extract(supernet, arch).eval()
        assert flops(lambda: supernet(x, arch)) == pytest.approx(flops(lambda: static(x)), rel=0.01)


def test_unet_convs_per_level() -> None:
    space = SPACES.get("unet")(levels=2, channels=8, convs=[1, 2, 4])
    blocks = [name for name, node in space.nodes.items()
              if name.startswith(("enc", "dec")) and node.ops == ("conv3x3",)]
    assert sorted(blocks) == ["dec0a", "dec1a", "dec1b", "enc0a", "enc1a", "enc1b", "enc2a", "enc2b", "enc2c", "enc2d"]
    default = SPACES.get("unet")(levels=2, channels=8)
    assert cost(space, {}).macs_per_pixel == cost(default, {}).macs_per_pixel  # a conv costs the same at every level
    assert cost(space, {}).params > cost(default, {}).params
    with pytest.raises(ValueError, match="unet convs: expected one count in 1..16, or 3"):
        SPACES.get("unet")(levels=2, channels=8, convs=[2, 2])


def test_nm_cost_scales_sparse_layers() -> None:
    space = SPACES.get("toy")()
    arch = space.largest()
    dense = cost(space, arch)
    half = cost(space, {**arch, "nm:branch": "2:4"})
    mid_macs = 9 * 8 * 8  # 'mid' reads 8 channels, writes 8; 'tail' reads 16, writes 1
    tail_macs = 9 * 16 * 1
    assert dense.macs_per_pixel - half.macs_per_pixel == pytest.approx((mid_macs + tail_macs) / 2)


def test_relaxed_one_hot_equals_discrete() -> None:
    space = SPACES.get("toy")()
    supernet = Supernet(space).eval()
    x = torch.rand(2, 1, 16, 16)
    choices = space.choices()
    for seed in range(5):
        arch = space.sample(seed)
        relaxed = dict(arch)
        for label, choice in choices.items():
            if choice.kind in ("op", "input"):
                relaxed[label] = torch.nn.functional.one_hot(torch.tensor(choice.values.index(arch[label])),
                                                             len(choice.values)).float()
        torch.testing.assert_close(supernet(x, relaxed), supernet(x, arch), atol=1e-6, rtol=0)


def test_relaxed_gradients_reach_alpha_and_width_scales() -> None:
    space = SPACES.get("toy")()
    supernet = Supernet(space)
    arch = space.largest()
    alpha = torch.zeros(3, requires_grad=True)
    scales = torch.ones(16, requires_grad=True)
    arch["op:stem"] = alpha.softmax(0)
    arch["width:down"] = scales
    supernet(torch.rand(2, 1, 16, 16), arch).square().mean().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    assert scales.grad is not None and scales.grad.abs().sum() > 0


def test_active_context_and_residual() -> None:
    space = SPACES.get("dncnn")(depth=3, channels=8, group=4, bn=False)
    supernet = Supernet(space)
    x = torch.rand(1, 1, 8, 8)
    small = space.smallest()
    with supernet.active(small):
        torch.testing.assert_close(supernet(x), supernet(x, small))
    torch.testing.assert_close(supernet(x), supernet(x, space.largest()))
    for layer in supernet.layers.values():  # zero weights: the predicted noise is 0, output = input
        for p in layer.parameters():
            p.data.zero_()
    torch.testing.assert_close(supernet(x), x)
    with pytest.raises(ValueError, match="takes 1-channel images"):
        supernet(torch.rand(1, 3, 8, 8))


def test_bn_uses_sliced_statistics_and_recalibrates() -> None:
    space = SPACES.get("dncnn")(depth=4, channels=16, group=8)
    supernet = Supernet(space)
    bn = supernet.layers["bn2"].candidates["bn"]
    x = torch.rand(4, 1, 16, 16)
    supernet.train()
    supernet(x, space.smallest())  # 8 of 16 channels: only their statistics move
    assert torch.all(bn.running_mean[8:] == 0) and torch.any(bn.running_mean[:8] != 0)
    batches = [torch.rand(4, 1, 16, 16) for _ in range(3)]
    assert recalibrate_bn(supernet, space.smallest(), batches) == 3
    assert bn.momentum == 0.1 and supernet.training
    # the statistics are the plain average of the batch statistics of the 'bn2' input
    features = []
    hook = supernet.layers["conv2"].register_forward_hook(lambda m, i, o: features.append(o))
    supernet.eval()
    for b in batches:
        supernet(b, space.smallest())
    hook.remove()
    expected = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    torch.testing.assert_close(bn.running_mean[:8], expected, atol=1e-5, rtol=1e-4)


def test_torchscript_export_round_trip(tmp_path) -> None:
    space = SPACES.get("toy")()
    static = extract(Supernet(space), space.sample(2)).eval()
    x = torch.rand(1, 1, 16, 16)
    path = export_torchscript(static, x, tmp_path / "net.pt")
    loaded = torch.jit.load(str(path))
    torch.testing.assert_close(loaded(torch.rand(1, 1, 16, 16) * 0 + x), static(x))


def test_onnx_export(tmp_path) -> None:
    pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (in the 'onnx' extra) is not installed")
    from nasden.core.extract import export_onnx
    space = SPACES.get("unet")(levels=2, channels=8, group=8)
    static = extract(Supernet(space), space.sample(0)).eval()
    path = export_onnx(static, torch.rand(1, 1, 16, 16), tmp_path / "net.onnx")
    x = torch.rand(2, 1, 24, 40)  # other batch and size: the axes are dynamic
    (y,) = ort.InferenceSession(str(path)).run(None, {"noisy": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), static(x), atol=1e-5, rtol=0)


def test_latency_helper_is_the_median_of_timed_runs_after_warmup(monkeypatch) -> None:
    calls: list[int] = []

    class Counted(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return x

    durations = iter([0.0, 0.3, 1.0, 1.1, 2.0, 2.5])  # start/stop pairs: runs of 0.3, 0.1, 0.5 s
    monkeypatch.setattr("nasden.core.cost.time.perf_counter", lambda: next(durations))
    assert measure_latency(Counted(), torch.rand(1, 1, 8, 8), runs=3, warmup=2) == pytest.approx(0.3)
    assert len(calls) == 5


def test_relaxed_arch_cannot_be_extracted() -> None:
    space = SPACES.get("toy")()
    arch = space.largest()
    arch["op:stem"] = torch.ones(3) / 3
    with pytest.raises(ValueError, match="discrete architecture"):
        extract(Supernet(space), arch)
