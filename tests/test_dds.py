from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F

from nasden.cli import main
from nasden.common.registry import SPACES
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.gates import dds_gate, spatial_mean
from nasden.core.supernet import Supernet
from nasden.data.images import save_image
from nasden.deploy.model_file import load as load_final
from nasden.pipeline.recipe import RecipeError, parse_recipe
from nasden.pipeline.run import create_run, execute
from nasden.strategies.gate import GateConfig, budget_bias, complexity_loss, gate_budget, gate_labels, spread_over_flops
from nasden.strategies.sandwich import SandwichConfig, distill_target, sandwich_archs, sandwich_step, step_plan
from nasden.strategies.slimming import slimmer


def test_slimmable_space_widths_and_attention() -> None:
    space = SPACES.get("slimmable")(depth=5, channels=64)
    widths = [c for c in space.choices().values() if c.kind == "width"]
    assert len(widths) == 4  # one label per hidden layer; the tail conv stays fixed
    assert all(c.values == (16, 24, 32, 40, 48, 56, 64) for c in widths)  # rho in [0.2, 1], groups of 8
    assert "attention" in space.nodes and not space.has_batchnorm
    unet = SPACES.get("slimmable")(backbone="unet", levels=2, channels=16)
    assert len([c for c in unet.choices().values() if c.kind == "width"]) == 14  # 2 + 3 + 3 + 3 + 3 convs
    with pytest.raises(ValueError, match="levels applies to backbone 'unet'"):
        SPACES.get("slimmable")(levels=2)


def test_sandwich_always_has_largest_and_smallest() -> None:
    space = SPACES.get("slimmable")(depth=4, channels=32)
    rng = random.Random(0)
    for _ in range(20):
        archs = sandwich_archs(space, 4, rng)
        assert len(archs) == 4 and archs[0] == space.largest() and archs[-1] == space.smallest()
    assert sandwich_archs(space, 2, rng) == [space.largest(), space.smallest()]


def test_largest_every_skips_the_largest_and_its_teaching() -> None:
    space = SPACES.get("slimmable")(depth=4, channels=32)
    largest, smallest = space.largest(), space.smallest()
    config = SandwichConfig(n=3, distill="synergy", largest_every=3)
    plans = [step_plan(space, config, step, seed=0) for step in range(6)]
    assert [len(archs) for archs, _ in plans] == [3, 2, 2, 3, 2, 2]
    assert [mode for _, mode in plans] == ["synergy", "none", "none", "synergy", "none", "none"]
    assert all((archs[0] == largest) == (step % 3 == 0) and archs[-1] == smallest
               for step, (archs, _) in enumerate(plans))
    assert step_plan(space, SandwichConfig(n=3), 1, seed=0)[0][0] == largest  # every step by default
    with pytest.raises(ValueError, match="largest_every"):
        SandwichConfig(largest_every=0)


@pytest.mark.parametrize("mode, expected", [("synergy", 1 + 2 + 2), ("inplace", 1 + 2 + 1), ("none", 1 + 1 + 2)])
def test_distillation_losses_by_hand(mode: str, expected: float) -> None:
    # largest predicts 1, the random one 3, the smallest 0; the ground truth is 2 (D = L1)
    clean = torch.tensor([2.0])
    outputs = [torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([0.0])]
    total, previous = 0.0, []
    for index, out in enumerate(outputs):
        total += F.l1_loss(out, distill_target(mode, index, 3, clean, previous)).item()
        previous.append(out)
    # synergy: |1-2| + |3-1| + |0-mean(1,3)|; inplace: |1-2| + |3-1| + |0-1|; none: all against 2
    assert total == expected


def test_a_sandwich_step_stops_the_gradient_at_its_teachers() -> None:
    space = SPACES.get("slimmable")(depth=3, channels=16)
    supernet = Supernet(space)
    archs = [space.largest(), space.smallest()]
    noisy, clean = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)

    def gradients(teacher_detached: bool) -> list[torch.Tensor]:
        supernet.zero_grad()
        largest = supernet(noisy, archs[0])
        teacher = largest.detach() if teacher_detached else largest
        (F.mse_loss(largest, clean) + F.mse_loss(supernet(noisy, archs[1]), teacher)).backward()
        return [p.grad.clone() for p in supernet.parameters()]

    supernet.zero_grad()
    total = sandwich_step(supernet, archs, noisy, clean, "inplace", F.mse_loss, lambda loss: loss.backward())
    step = [p.grad.clone() for p in supernet.parameters()]
    assert total > 0
    for got, expected in zip(step, gradients(teacher_detached=True)):
        torch.testing.assert_close(got, expected)
    assert any(not torch.allclose(got, other) for got, other in zip(step, gradients(teacher_detached=False)))


def test_distill_ramp_mixes_the_teacher_into_the_target_linearly() -> None:
    ramp = SandwichConfig(steps=100, distill_ramp=[0.2, 0.6])
    assert [ramp.distill_weight(s) for s in (0, 19, 20, 40, 50, 60, 99)] == [0, 0, 0, 0.5, 0.75, 1, 1]
    assert SandwichConfig(steps=100).distill_weight(0) == 1.0  # the paper: teachers from the first step
    assert SandwichConfig(steps=10, distill_ramp=[0.5, 0.5]).distill_weight(4) == 0.0
    for bad in ([0.6, 0.2], [0.5], [0.0, 1.5]):
        with pytest.raises(ValueError, match="distill_ramp"):
            SandwichConfig(distill_ramp=bad)
    space = SPACES.get("slimmable")(depth=3, channels=16)
    supernet = Supernet(space)
    archs = [space.largest(), space.smallest()]
    noisy, clean = torch.rand(2, 1, 12, 12), torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        largest, smallest = (supernet(noisy, arch) for arch in archs)
        expected = F.mse_loss(largest, clean) + F.mse_loss(smallest, 0.75 * clean + 0.25 * largest)

        def step(mode: str, weight: float) -> float:
            return sandwich_step(supernet, archs, noisy, clean, mode, F.mse_loss, lambda loss: None, weight)

        assert step("inplace", 0.25) == pytest.approx(expected.item(), rel=1e-6)
        assert step("inplace", 0.0) == pytest.approx(step("none", 1.0), rel=1e-6)


def test_slimmer_steps_down_by_a_group() -> None:
    space = SPACES.get("slimmable")(depth=3, channels=64)
    choice = space.choices()["width:conv1"]
    assert slimmer(choice, 64, 16) == 48 and slimmer(choice, 24, 16) == 16 and slimmer(choice, 16, 16) is None


def test_gate_labels_from_given_psnr() -> None:
    psnr = torch.tensor([[30.0, 30.1, 30.15],   # gain 0.15 < beta: easy → smallest
                         [28.0, 28.5, 28.6],    # gain 0.6: hard → largest; graded: 28.5 is within 0.2 → 1
                         [25.0, 25.0, 26.0]])   # hard; graded: only the largest is within 0.2
    assert gate_labels(psnr, 0.2, "paper").tolist() == [0, 2, 2]
    assert gate_labels(psnr, 0.2, "graded").tolist() == [0, 1, 2]


def test_complexity_loss_gradient_by_hand() -> None:
    logits = torch.tensor([[0.0, 0.0]], requires_grad=True)
    flops = torch.tensor([100.0, 300.0])
    loss = complexity_loss(logits.softmax(1), flops, budget=150.0, scale=300.0)
    assert loss.item() == pytest.approx(((200 - 150) / 300) ** 2)  # E[FLOPs] = 200
    loss.backward()
    # d/dz_i of ((p·F - C)/T)^2 = 2 (p·F - C)/T^2 · p_i (F_i - p·F)
    coefficient = 2 * 50 / 300 ** 2
    expected = torch.tensor([[coefficient * 0.5 * -100, coefficient * 0.5 * 100]])
    torch.testing.assert_close(logits.grad, expected)


def test_spread_over_flops_keeps_extremes() -> None:
    pool = [{"flops_per_pixel": float(f)} for f in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]
    chosen = [c["flops_per_pixel"] for c in spread_over_flops(pool, 4)]
    assert chosen == [10.0, 40.0, 70.0, 100.0]


def test_gate_overhead_is_the_stem_at_the_smallest_width() -> None:
    space = SPACES.get("slimmable")(depth=4, channels=32)
    supernet = Supernet(space)
    gate = dds_gate(supernet, 3, "smallest", 16)
    assert gate.spec == {"kind": "dds", "width": 8, "hidden": 16, "candidates": 3}
    assert gate.flops_per_pixel == 2 * 9 * 1 * 8
    assert gate(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    assert not any(p.requires_grad for p in gate.stem.parameters())
    assert not gate.reduce.weight.requires_grad  # W1 comes frozen from the attention head


class BrightnessGate(torch.nn.Module):
    """Routes dark images to candidate 0, mid-grey to 1, bright to 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((1, 2, 3))
        return torch.stack([-(mean - c).abs() for c in (0.1, 0.3, 0.5)], 1)


class FixedGains(torch.nn.Module):
    """A gain gate whose predicted dB against the largest candidate is the image's first pixel row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :3]


def test_budget_bias_is_the_smallest_bias_that_meets_the_budget() -> None:
    space = SPACES.get("slimmable")(depth=3, channels=16)
    model = DynamicDenoiser(FixedGains(), Supernet(space), [space.largest()] * 3, [1.0, 2.0, 4.0])
    # score - bias · FLOPs / 4: the first image moves to the middle at bias 0.05 / 0.5 = 0.1 and to the
    # cheapest at 0.05 / 0.25 = 0.2; the second to the middle at 1 / 0.5 = 2, to the cheapest at 1 / 0.25 = 4
    gains = torch.tensor([[-0.1, -0.05, 0.0], [-2.0, -1.0, 0.0]])
    batch = torch.zeros(2, 1, 1, 3)
    batch[:, 0, 0] = gains
    assert budget_bias(model, [batch], 4.0) == 0.0  # both on the largest
    bias = budget_bias(model, [batch], 2.5)  # (1 + 4) / 2: the first image must go to the cheapest
    assert bias == pytest.approx(0.2, rel=1e-6)
    model.cost_bias = bias
    assert model.route(batch).tolist() == [0, 2]
    assert budget_bias(model, [batch], 1.5) == pytest.approx(2.0, rel=1e-6)  # (1 + 2) / 2
    assert budget_bias(model, [batch], 1.0) == pytest.approx(4.0, rel=1e-6)


def test_batched_routing_equals_per_image_routing() -> None:
    space = SPACES.get("slimmable")(depth=4, channels=16)
    supernet = Supernet(space)
    archs = [space.smallest(), space.sample(1), space.largest()]
    model = DynamicDenoiser(BrightnessGate(), supernet, archs, [1.0, 2.0, 3.0]).eval()
    x = torch.rand(8, 1, 16, 16) * torch.linspace(0.1, 1, 8).view(8, 1, 1, 1)
    with torch.no_grad():
        batched = model(x)
        single = torch.cat([model(x[i: i + 1]) for i in range(8)])
    assert model.route(x).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    assert model.counts.tolist() == [6, 6, 4]
    assert model.spent()["flops_per_pixel"] == pytest.approx((6 * 1 + 6 * 2 + 4 * 3) / 16)


DDS_TINY = {
    "name": "dds-tiny", "seed": 0, "device": "cpu",
    "data": {"patch": 24, "batch": 4, "val_images": 2, "val_crop": 64, "noise": {"sigma": [0, 50]}},
    "space": {"name": "slimmable", "depth": 4, "channels": 16, "group": 8},
    "stages": [{"strategy": "sandwich", "steps": 6, "val_every": 3, "val_size": 32},
               {"strategy": "progressive_slimming", "group": 8, "val_images": 2, "val_size": 32},
               {"strategy": "gate", "candidates": 3, "steps": 6, "budget_flops": 4000},
               {"strategy": "evaluate", "latency_size": 16, "latency_runs": 1}],
}


def test_dds_pipeline_end_to_end(tmp_path) -> None:
    run = create_run(parse_recipe(DDS_TINY), tmp_path / "run")
    summaries = execute(run, quiet=True)
    record = json.loads((run / "stages/01-progressive_slimming/routing_space.json").read_text())
    flops = [entry["flops_per_pixel"] for entry in record]
    assert flops == sorted(flops, reverse=True) and len(set(flops)) == len(flops)  # monotone in FLOPs
    space = SPACES.get("slimmable")(depth=4, channels=16, group=8)
    assert record[0]["arch"] == space.largest() and record[-1]["arch"] == space.smallest()
    assert (run / "stages/01-progressive_slimming/routing_space.png").stat().st_size > 1000
    assert summaries[1]["evaluations"] > len(record)
    loaded = load_final(run)
    spec, model = loaded.spec, loaded.network
    assert spec["kind"] == "dynamic" and isinstance(model, DynamicDenoiser)
    row = summaries[3]["sets"][0]
    assert sum(row["choices"]) == 2 and min(flops) <= row["flops_per_pixel"] <= max(flops) + 200

    noisy = torch.rand(1, 30, 40)
    save_image(noisy, tmp_path / "noisy.png")
    assert main(["denoise", str(run), str(tmp_path / "noisy.png"), str(tmp_path / "out.png")]) == 0
    assert (tmp_path / "out.png").exists()
    assert main(["denoise", str(run), str(tmp_path / "noisy.png"), str(tmp_path / "tiled.png"), "--tile", "16",
                 "--overlap", "8", "--route", "tile", "--route-map", str(tmp_path / "map.png")]) == 0
    assert (tmp_path / "tiled.png").exists() and (tmp_path / "map.png").exists()
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["network"]["kind"] == "dynamic" and manifest["methods"] == ["gate", *CANDIDATE_METHODS]
    exported = torch.jit.load(str(tmp_path / "export" / manifest["file"]))
    x = torch.rand(3, 1, 24, 40)  # not the 64×64 it was traced at
    torch.testing.assert_close(exported.gate(x).argmax(1), model.route(x))
    for name, candidate in zip(CANDIDATE_METHODS, model.candidates):  # one weight set behind every method
        torch.testing.assert_close(getattr(exported, name)(x), candidate(x), atol=1e-5, rtol=0)
    shared = sum(p.numel() for p in exported.parameters())
    assert shared == sum(p.numel() for p in model.parameters())


CANDIDATE_METHODS = ["candidate0", "candidate1", "candidate2"]


def test_gain_gate_keeps_the_bias_that_meets_its_budget(tmp_path) -> None:
    gate = {"strategy": "gate", "candidates": 3, "steps": 6, "labels": "gain", "gate": "classifier", "hidden": 8,
            "budget_ratio": 0.5, "patch": 32}
    run = create_run(parse_recipe({**DDS_TINY, "stages": DDS_TINY["stages"][:2] + [gate]}), tmp_path / "run")
    execute(run, quiet=True)
    loaded = load_final(run)
    spec, model = loaded.spec, loaded.network
    assert spec["gate"]["kind"] == "classifier" and spec["cost_bias"] >= 0 and model.cost_bias == spec["cost_bias"]
    batches = [torch.rand(4, 1, 32, 32)]
    assert budget_bias(model, batches, model.flops[-1]) == 0.0  # the largest's budget needs no bias
    assert budget_bias(model, batches, model.flops[0]) >= budget_bias(model, batches, model.flops[1])


def test_gate_budget_outside_the_space_is_refused_when_parsed() -> None:
    recipe = {**DDS_TINY, "stages": DDS_TINY["stages"][:2] + [{"strategy": "gate", "budget_flops": 1e9}]}
    with pytest.raises(RecipeError, match=r"stages.2.budget_flops: 1e\+09 FLOPs/pixel is outside what the space"):
        parse_recipe(recipe)


def test_a_budget_outside_the_candidates_is_moved_into_their_range() -> None:
    said: list[str] = []
    assert gate_budget(GateConfig(budget_flops=50e3), 10e3, 30e3, said.append) == 30e3
    assert gate_budget(GateConfig(budget_flops=5e3), 10e3, 30e3, said.append) == 10e3
    assert len(said) == 2 and "outside the candidates' range" in said[0]


def test_a_budget_ratio_below_the_cheapest_candidate_is_raised_to_it() -> None:
    said: list[str] = []
    assert gate_budget(GateConfig(budget_ratio=0.5), 15.3e3, 29.9e3, said.append) == 15.3e3
    assert "below the cheapest" in said[0]
    assert gate_budget(GateConfig(budget_ratio=0.5), 10e3, 30e3, said.append) == 15e3 and len(said) == 1
    assert gate_budget(GateConfig(), 10e3, 30e3, said.append) is None


def test_onnx_export_of_a_dynamic_run(tmp_path) -> None:
    pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (in the 'onnx' extra) is not installed")
    recipe = {**DDS_TINY, "stages": DDS_TINY["stages"][:3]}
    run = create_run(parse_recipe(recipe), tmp_path / "run")
    execute(run, quiet=True)
    assert main(["export", str(run), "--format", "onnx-candidates", "--out", str(tmp_path / "onnx")]) == 0
    manifest = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    model = load_final(run).network
    x = torch.rand(2, 1, 40, 24)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "one")]) == 0
    (routed,) = ort.InferenceSession(str(tmp_path / "one" / "denoiser.onnx")).run(None, {"noisy": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(routed), model(x), atol=1e-5, rtol=0)
    (logits,) = ort.InferenceSession(str(tmp_path / "onnx" / manifest["gate"])).run(None, {"noisy": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), model.gate(x), atol=1e-4, rtol=1e-4)
    for index, name in enumerate(manifest["candidates"]):
        (y,) = ort.InferenceSession(str(tmp_path / "onnx" / name)).run(None, {"noisy": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(y), model.candidates[index](x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels_last", [True, False])
def test_spatial_mean_is_the_mean_in_either_memory_format(channels_last: bool) -> None:
    x = torch.randn(3, 5, 7, 9, requires_grad=True)
    y = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    torch.testing.assert_close(spatial_mean(y), x.mean((2, 3)))
    spatial_mean(y).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 1 / 63))
