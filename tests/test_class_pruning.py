"""ClassPruning: N:M branches, SR-STE, variable BatchNorm, pseudo labels, the classifier and the three stages."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nasden.cli import main
from nasden.common.registry import SPACES
from nasden.core.cost import cost
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.extract import extract
from nasden.core.gates import ClassifierGate
from nasden.core.ops.channelwise import VariableBatchNorm
from nasden.core.ops.nm import NMGradient, apply_nm
from nasden.core.supernet import Supernet
from nasden.data.difficulty import median_variances, pseudo_labelled, residual_variance
from nasden.data.noise import NoiseConfig, add_noise
from nasden.deploy.model_file import load as load_final
from nasden.pipeline.recipe import RecipeError, parse_recipe
from nasden.pipeline.run import create_run, execute
from nasden.strategies.class_pruning import branch_archs, branch_l1, branch_weights, entropy

PATTERNS = ["1:4", "2:4", "4:4"]


def small_space(**options):
    return SPACES.get("nm_branches")(**{"depth": 4, "channels": 8, **options})


def groups_of(weight: torch.Tensor, m: int) -> torch.Tensor:
    """``[out, in, kh, kw]`` → rows of M consecutive input channels per (out, kh, kw)."""
    return weight.permute(0, 2, 3, 1).reshape(-1, m)


def test_branches_share_one_label_and_sort_cheapest_first() -> None:
    space = small_space()
    assert [c.label for c in space.choices().values()] == ["nm:branch"]
    branches = branch_archs(space)
    assert list(branches) == PATTERNS
    flops = [cost(space, arch).flops_per_pixel for arch in branches.values()]
    assert flops == sorted(flops)


def test_extracted_branches_have_n_nonzeros_per_group_and_a_dense_first_layer() -> None:
    space = small_space()
    supernet = Supernet(space).eval()
    for pattern, arch in branch_archs(space).items():
        n, m = (int(v) for v in pattern.split(":"))
        static = extract(supernet, arch)
        convs = [module for module in static.modules() if isinstance(module, torch.nn.Conv2d)]
        assert bool((convs[0].weight != 0).all())  # 1 input channel: not a multiple of 4, stays dense
        for conv in convs[1:]:
            assert torch.all((groups_of(conv.weight, m) != 0).sum(1) == n)


def test_nm_cost_counts_sparse_layers_at_n_over_m() -> None:
    space = small_space()  # conv1 1→8 (dense), conv2, conv3 8→8, tail 8→1
    dense_first, hidden = 9 * 1 * 8, 9 * 8 * 8
    tail = 9 * 8 * 1
    for pattern, arch in branch_archs(space).items():
        n, m = (int(v) for v in pattern.split(":"))
        assert cost(space, arch).macs_per_pixel == pytest.approx(dense_first + (2 * hidden + tail) * n / m)
    assert cost(space, branch_archs(space)["4:4"]).params == cost(space, branch_archs(space)["1:4"]).params


def test_sr_ste_gradient_by_hand() -> None:
    w = torch.tensor([0.5, -2.0, 0.1, 1.0]).view(1, 4, 1, 1)
    coefficient = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    mask = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 4, 1, 1)  # the two largest magnitudes: -2 and 1
    expected = {
        "sr_ste": coefficient + 0.1 * (1 - mask) * w,  # grad + lambda * (1 - mask) * w
        "ste": coefficient,
        "masked": coefficient * mask,
    }
    for rule, gradient in expected.items():
        weight = w.clone().requires_grad_(True)
        masked = apply_nm(weight, (2, 4), NMGradient(rule, 0.1))
        torch.testing.assert_close(masked.detach(), w * mask)
        (masked * coefficient).sum().backward()
        torch.testing.assert_close(weight.grad, gradient, msg=rule)


def test_sr_ste_decays_pruned_weights_in_the_supernet() -> None:
    space = small_space()
    supernet = Supernet(space).train()
    conv = supernet.layers["conv2"].candidates["conv3x3"]
    x = torch.rand(2, 1, 12, 12)
    supernet(x, branch_archs(space)["1:4"]).sum().backward()
    pruned = 1 - apply_nm(conv.weight.detach(), (1, 4)).ne(0).float()
    assert bool((conv.weight.grad * pruned).abs().sum() > 0)  # pruned weights are updated too


def test_variable_batchnorm_keeps_separate_statistics() -> None:
    space = small_space()
    supernet = Supernet(space).train()
    norm = supernet.layers["bn2"].candidates["vbn"]
    assert isinstance(norm, VariableBatchNorm) and list(norm.norms) == PATTERNS
    supernet(torch.rand(4, 1, 12, 12), branch_archs(space)["2:4"])
    moved = {p: bool(bn.running_mean.abs().sum() > 0) for p, bn in norm.norms.items()}
    assert moved == {"1:4": False, "2:4": True, "4:4": False}
    assert norm.norms["2:4"].num_batches_tracked == 1

    shared = Supernet(small_space(variable_bn=False))
    assert "vbn" not in shared.layers["bn2"].candidates and "bn" in shared.layers["bn2"].candidates


def test_pseudo_labels_have_the_class_median_variances() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(300, 1, 16, 16, generator=g)
    noisy = add_noise(clean, NoiseConfig(levels=[15, 25, 50]), g)
    medians = median_variances(residual_variance(noisy, clean), 3)
    torch.testing.assert_close(255 * medians.sqrt(), torch.tensor([15.0, 25.0, 50.0]), atol=1.0, rtol=0)
    inputs, labels = pseudo_labelled(noisy[:5], clean[:5], medians)
    assert inputs.shape == (15, 1, 16, 16) and labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    variances = residual_variance(inputs, clean[:5].repeat(3, 1, 1, 1))
    torch.testing.assert_close(variances, medians.repeat_interleave(5), rtol=1e-4, atol=0)


def test_median_variances_split_into_equal_classes() -> None:
    medians = median_variances(torch.arange(1.0, 10.0), 3)  # classes {1,2,3}, {4,5,6}, {7,8,9}
    assert medians.tolist() == [2.0, 5.0, 8.0]
    with pytest.raises(ValueError, match="difficulty classes"):
        median_variances(torch.ones(2), 3)


def test_classifier_gate_shape_and_flops() -> None:
    gate = ClassifierGate(1, 3, channels=16, stride=2)
    x = torch.rand(2, 1, 64, 64)
    with FlopCounterMode(display=False) as counter:
        logits = gate(x)
    assert logits.shape == (2, 3) and gate.spec["candidates"] == 3
    convs = counter.get_total_flops() - 2 * 2 * 16 * 3  # the fully connected layer runs once per image
    assert gate.flops_per_pixel == pytest.approx(convs / (2 * 64 * 64))
    assert gate.eval()(torch.rand(1, 1, 5, 5)).shape == (1, 3)  # tiny inputs still classify


def test_entropy_loss() -> None:
    assert entropy(torch.tensor([[1.0, 0.0, 0.0]])).item() == pytest.approx(0.0)
    assert entropy(torch.full((2, 3), 1 / 3)).item() == pytest.approx(torch.log(torch.tensor(3.0)).item())


RECIPE = {
    "name": "cp", "seed": 1, "device": "cpu",
    "data": {"patch": 24, "batch": 4, "val_images": 2, "val_crop": 48, "noise": {"levels": [15, 25, 50]}},
    "space": {"name": "nm_branches", "depth": 4, "channels": 8},
    "stages": [{"strategy": "classifier_pretrain", "steps": 20, "channels": 8, "pool_batches": 4},
               {"strategy": "branch_train", "steps": 10, "lr": 1e-3, "val_every": 10},
               {"strategy": "joint_finetune", "steps": 6, "checkpoint_every": 3, "val_every": 6},
               {"strategy": "evaluate", "latency_size": 32, "latency_runs": 2}],
}


def test_three_stages_chain_into_a_dynamic_denoiser(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    summaries = execute(create_run(parse_recipe(RECIPE), run), quiet=True)
    assert [len(s["median_sigmas"]) for s in summaries[:1]] == [3]
    for summary in summaries[1:3]:
        assert set(summary["val_shares"]) == set(PATTERNS)
        assert sum(summary["val_shares"].values()) == pytest.approx(1.0)
        assert 0.25 <= summary["val_flops_ratio"] < 1.1  # between the 1:4 branch and the dense one plus the gate
    loaded = load_final(run)
    spec, model = loaded.spec, loaded.network
    assert isinstance(model, DynamicDenoiser) and spec["gate"]["kind"] == "classifier"
    assert [arch["nm:branch"] for arch in spec["archs"]] == PATTERNS

    assert main(["eval", str(run), "--data", "builtin", "--sigma", "50", "--crop", "48",
                 "--json", str(tmp_path / "eval.json")]) == 0
    row = json.loads((tmp_path / "eval.json").read_text())
    assert sum(row["shares"]) == pytest.approx(1.0) and 0 < row["denoise_ms"] < 1e6
    assert min(model.flops) + model.gate_flops <= row["flops_per_pixel"] <= max(model.flops) + model.gate_flops
    assert main(["export", str(run), "--out", str(tmp_path / "export")]) == 0
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    exported = torch.jit.load(str(tmp_path / "export" / manifest["file"]))
    x = torch.rand(2, 1, 24, 24)
    for index, candidate in enumerate(model.candidates):  # each branch: the dense weights under its mask
        torch.testing.assert_close(getattr(exported, f"candidate{index}")(x), candidate(x), atol=1e-5, rtol=0)
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in model.parameters())


def test_dense_warmup_trains_the_densest_branch_alone_first(tmp_path) -> None:
    warm = {"strategy": "branch_train", "steps": 4, "lr": 1e-3, "val_every": 4, "dense_warmup": 0.75}
    run = create_run(parse_recipe({**RECIPE, "stages": [RECIPE["stages"][0], warm]}), tmp_path / "run")
    execute(run, quiet=True)
    model = load_final(run).network
    tracked = {p: int(model.state_dict()[f"network.layers.bn2.candidates.vbn.norms.{p}.num_batches_tracked"])
               for p in PATTERNS}
    assert tracked == {"1:4": 1, "2:4": 1, "4:4": 4}  # three steps of the dense branch alone, then one of all three
    with pytest.raises(RecipeError, match="dense_warmup: a branch_train option"):
        parse_recipe({**RECIPE, "stages": [*RECIPE["stages"][:2], {**RECIPE["stages"][2], "dense_warmup": 0.5}]})


def test_uniform_mix_spreads_the_branch_weights_evenly() -> None:
    p = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    torch.testing.assert_close(branch_weights(p, 0.0), p)  # the paper's Eq. 6
    torch.testing.assert_close(branch_weights(p, 1.0), torch.full((2, 3), 1 / 3))
    half = torch.tensor([[2 / 3, 1 / 6, 1 / 6], [0.1 + 1 / 6, 0.15 + 1 / 6, 0.25 + 1 / 6]])
    torch.testing.assert_close(branch_weights(p, 0.5), half)
    with pytest.raises(RecipeError, match=r"uniform_mix: expected a weight in \[0, 1\], got 1.5"):
        parse_recipe({**RECIPE, "stages": [*RECIPE["stages"][:2], {**RECIPE["stages"][2], "uniform_mix": 1.5}]})


def test_skip_below_runs_only_the_pairs_that_weigh_enough() -> None:
    space = small_space()
    supernet = Supernet(space).eval()  # per-image outputs that do not depend on the batch
    archs = list(branch_archs(space).values())
    noisy, clean = torch.rand(3, 1, 12, 12), torch.rand(3, 1, 12, 12)
    every = branch_l1(supernet, archs, noisy, clean)
    weights = torch.tensor([[0.98, 0.01, 0.01], [0.3, 0.4, 0.3], [0.0, 0.005, 0.995]])
    runs = weights >= 0.02
    skipped = branch_l1(supernet, archs, noisy, clean, weights, skip_below=0.02)
    torch.testing.assert_close(skipped[runs], every[runs])
    assert bool((skipped[~runs] == 0).all()) and bool((every > 0).all())
    torch.testing.assert_close(branch_l1(supernet, archs, noisy, clean, weights), every)  # skip_below 0: every pair
    with pytest.raises(RecipeError, match=r"skip_below: expected a weight in \[0, 1\), got 1"):
        parse_recipe({**RECIPE, "stages": [*RECIPE["stages"][:2], {**RECIPE["stages"][2], "skip_below": 1}]})


def test_branch_training_needs_the_classifier() -> None:
    with pytest.raises(RecipeError, match="needs classifier from an earlier stage .put classifier_pretrain"):
        parse_recipe({**RECIPE, "stages": RECIPE["stages"][1:2]})  # refused before anything runs


def test_class_pruning_needs_a_space_with_nm_choices() -> None:
    with pytest.raises(RecipeError, match="needs a space with nm choices; this space has none"):
        parse_recipe({**RECIPE, "space": {"name": "dncnn", "depth": 3, "channels": 8},
                      "stages": RECIPE["stages"][:1]})


def test_blind_levels_draw_only_the_listed_sigmas() -> None:
    clean = torch.zeros(200, 1, 32, 32)
    noisy = add_noise(clean, NoiseConfig(levels=[15, 50]), torch.Generator().manual_seed(0))
    sigmas = 255 * noisy.flatten(1).std(1)
    assert bool(((sigmas - 15).abs() < 2).logical_or((sigmas - 50).abs() < 4).all())
    with pytest.raises(ValueError, match="levels"):
        NoiseConfig(levels=[])
