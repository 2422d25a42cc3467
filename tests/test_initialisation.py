"""He initialisation of a supernet's convolutions, and what it does to the signal of a deep BN-free supernet."""
from __future__ import annotations

import math

import pytest
import torch

import nasden.strategies.train as train
from nasden.core.initialisation import branch_ends, fan_in, he_, initialise
from nasden.core.ops.convolution import DynamicConv, DynamicConvTranspose, SeparableConv
from nasden.core.relaxation import ArchParameters
from nasden.core.supernet import Supernet
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute
from nasden.search_spaces.backbones import dncnn
from nasden.search_spaces.mod_unet import mod_unet
from nasden.strategies.train import TrainConfig


def test_he_draws_each_convolution_at_two_over_its_fan_in() -> None:
    torch.manual_seed(0)
    conv, transposed, separable = DynamicConv(64, 96, kernel=3), DynamicConvTranspose(96, 64), SeparableConv(64, 64, 5)
    before = conv.bias.clone()
    for module in (conv, transposed, separable):
        he_(module)
    assert fan_in(conv, conv.weight) == 64 * 9
    assert fan_in(transposed, transposed.weight) == 96 * 9 / 4  # a quarter of the kernel reaches an output pixel
    assert fan_in(separable, separable.depthwise) == 25  # one channel's 5x5 window
    for module, weight in ((conv, conv.weight), (transposed, transposed.weight), (separable, separable.depthwise),
                           (separable.pointwise, separable.pointwise.weight)):
        expected = math.sqrt(2 / fan_in(module, weight))
        assert float(weight.detach().std()) == pytest.approx(expected, rel=0.1)
        assert abs(float(weight.detach().mean())) < 0.1 * expected
    assert torch.equal(conv.bias, before)  # biases stay as built


def test_he_starts_every_residual_branch_at_zero() -> None:
    space = mod_unet(stages=2, levels=1, channels=8, layers=2)
    assert branch_ends(space) == {"t1_tail", "t2_tail"}  # each step's v_t = x_(t-1) + tail
    assert branch_ends(dncnn(depth=4, channels=8)) == {"tail"}  # the output: x - the last conv's
    torch.manual_seed(0)
    supernet = Supernet(space)
    built = {name: p.clone() for name, p in supernet.named_parameters()}
    initialise(supernet, "default")  # PyTorch's draw, made at construction: nothing to redo
    assert all(torch.equal(p, built[name]) for name, p in supernet.named_parameters())
    initialise(supernet, "he")
    for name, layer in supernet.layers.items():
        weights = [p for p in layer.parameters() if p.dim() == 4]
        assert all(bool((w == 0).all()) == (name in branch_ends(space)) for w in weights), name
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(supernet(x, space.largest()), x)  # the identity map, as the default nearly is
    with pytest.raises(ValueError, match="weight_init"):
        initialise(supernet, "xavier")


def _output_stds(weight_init: str, rms: bool) -> list[float]:
    """The output std of every layer but the tail (zero under ``he``), head first."""
    torch.manual_seed(0)
    space = mod_unet(levels=2, channels=8, layers=2, growth=2)
    supernet = Supernet(space)
    initialise(supernet, weight_init)
    stds: list[float] = []
    for name, layer in supernet.layers.items():
        if name not in branch_ends(space):
            layer.register_forward_hook(lambda module, inputs, output: stds.append(float(output.std())))
    with torch.no_grad():
        supernet(torch.rand(4, 1, 32, 32), ArchParameters(space, rms_mixing=rms).relaxed())
    return stds


def test_he_and_rms_mixing_carry_the_signal_to_the_coarse_levels() -> None:
    default, he_rms = _output_stds("default", False), _output_stds("he", True)
    # PyTorch's default init and the plain 1/K mixing lose ~6x per layer: the bottom is all but silent
    assert min(default) < 1e-4 * default[0]
    # He's init with the L2-normalised mixing keeps every layer within a few times the head's scale
    assert min(he_rms) > 0.05 * he_rms[0]


def test_train_draws_fresh_weights_by_weight_init_only(tmp_path, monkeypatch) -> None:
    def trained(weight_init: str) -> dict:
        recipe = {"name": "init", "seed": 0, "device": "cpu",
                  "data": {"patch": 16, "batch": 2, "val_images": 1, "val_crop": 32, "noise": {"sigma": 25}},
                  "space": {"name": "toy"}, "stages": [{"strategy": "train", "steps": 2, "weight_init": weight_init}]}
        return execute(create_run(parse_recipe(recipe), tmp_path / weight_init), quiet=True)[0]

    drawn: list[str] = []
    original = train.initialise
    monkeypatch.setattr(train, "initialise", lambda module, scheme: (drawn.append(scheme), original(module, scheme)))
    he, default = trained("he"), trained("default")
    assert drawn == ["he", "default"] and he["val_psnr"] != default["val_psnr"]
    with pytest.raises(ValueError, match="weight_init"):
        TrainConfig(weight_init="he", init="supernet")  # inherited weights are not redrawn
    with pytest.raises(ValueError, match="weight_init"):
        TrainConfig(weight_init="orthogonal")
