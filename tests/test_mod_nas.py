"""MoD-NAS: the unfolded space, collapsed mixed convolutions, relaxation, derivation and the darts strategy."""
from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nasden.strategies.darts as darts
from nasden.core.cost import cost
from nasden.core.extract import extract
from nasden.core.ops.mixed import MixedOp
from nasden.core.ops.unfold import UnfoldStep
from nasden.core.relaxation import ArchParameters, GradientConsistency, TaylorSaliency
from nasden.core.shapes import live_nodes
from nasden.core.space import SearchSpace, SpaceError
from nasden.core.supernet import Supernet
from nasden.pipeline.recipe import build_space, parse_recipe
from nasden.pipeline.run import create_run, execute
from nasden.search_spaces.backbones import dncnn_graph
from nasden.search_spaces.mod_unet import (
    DOWN_OPS,
    NORMAL_OPS,
    PAPER_DOWN_OPS,
    PAPER_NORMAL_OPS,
    PAPER_UP_OPS,
    UP_OPS,
    mod_unet,
)
from nasden.strategies.darts import DartsConfig, annealed_temperature


def test_unfold_step_matches_hand_computation() -> None:
    step = UnfoldStep(delta=0.3, eta=2.0)
    out = step(torch.tensor(0.5), torch.tensor(0.2), torch.tensor(0.9))
    # 0.5 - 0.3 * ((0.5 - 0.9) + 2 * (0.5 - 0.2)) = 0.5 - 0.3 * 0.2
    assert out.item() == pytest.approx(0.44)


def _one_step_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node("input", op="input", channels=1)
    g.add_node("d", op="conv1x1", channels=1)
    g.add_node("v", op="add")
    g.add_node("x1", op="unfold", denoised="v")
    g.add_node("output", op="output")
    g.add_edges_from([("input", "d"), ("input", "v"), ("d", "v"), ("input", "x1"), ("v", "x1"), ("x1", "output")])
    return g


def test_unfold_node_in_supernet_and_extracted_network() -> None:
    supernet = Supernet(SearchSpace(_one_step_graph()))
    conv = supernet.layers["d"].candidates["conv1x1"]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(0.25)  # v = y + 0.25
        supernet.unfold["x1"].delta.fill_(0.5)
        supernet.unfold["x1"].eta.fill_(3.0)
    y = torch.rand(1, 1, 4, 4)
    # x1 = y - delta * ((y - y) + eta * (y - v)) = y + delta * eta * 0.25
    expected = y + 0.5 * 3.0 * 0.25
    torch.testing.assert_close(supernet(y, {}), expected)
    torch.testing.assert_close(extract(supernet, {})(y), expected)


def test_unfold_node_errors_name_the_node() -> None:
    g = _one_step_graph()
    g.nodes["x1"]["denoised"] = "d"
    with pytest.raises(SpaceError, match="unfold node 'x1'"):
        SearchSpace(g)


@pytest.mark.parametrize("op", PAPER_NORMAL_OPS + PAPER_DOWN_OPS + PAPER_UP_OPS)
@pytest.mark.parametrize("side", [32, 16, 8])
def test_every_candidate_op_shapes_at_every_resolution(op: str, side: int) -> None:
    layer = MixedOp((op,), 16, 24, pre_relu=True)
    x = torch.randn(2, 16, side, side)
    expected = side // 2 if op in PAPER_DOWN_OPS else side * 2 if op in PAPER_UP_OPS else side
    assert layer(x, op, 24).shape == (2, 24, expected, expected)
    assert layer(x[:, :8], op, 16).shape == (2, 16, expected, expected)  # slimmed input and output
    assert layer(x, torch.ones(1), torch.rand(24)).shape == (2, 24, expected, expected)  # relaxed


@pytest.mark.parametrize("stages", [1, 2])
def test_mod_unet_structure_and_forward(stages: int) -> None:
    space = mod_unet(stages=stages, levels=2, channels=16, layers=3)
    unfolds = [n for n in space.nodes.values() if n.kind == "unfold"]
    assert len(unfolds) == stages
    assert all(n.pre_relu for n in space.nodes.values() if n.kind == "layer" and not n.name.endswith("head"))
    assert not space.has_batchnorm and space.resolution_multiple == 4
    labels = space.choices()
    assert labels["op:t1_enc0_n1"].values == tuple(NORMAL_OPS)
    assert labels["op:t1_enc1_down"].values == tuple(DOWN_OPS)
    assert labels["op:t1_dec2_up"].values == tuple(UP_OPS)
    # dense depth: encoder layer 3 reads the block input or any earlier layer; decoder layer 3 its two layers
    assert labels["input:t1_enc0_n3"].values == ("t1_head", "t1_enc0_n1", "t1_enc0_n2")
    assert labels["input:t1_dec0_n3"].values == ("t1_dec0_n1", "t1_dec0_n2")
    supernet = Supernet(space)
    x = torch.rand(2, 1, 24, 24)
    for arch in (space.largest(), space.smallest(), space.sample(3)):
        out = supernet(x, arch)
        assert out.shape == x.shape
        torch.testing.assert_close(extract(supernet, arch)(x), out, rtol=1e-4, atol=1e-5)


def test_three_levels_with_fusion_convs_and_the_appendix_ops_build_and_extract() -> None:
    space = mod_unet(levels=3, channels=8, layers=2, fusion="conv3x3", normal_ops=PAPER_NORMAL_OPS,
                     down_ops=PAPER_DOWN_OPS, up_ops=PAPER_UP_OPS)
    assert space.resolution_multiple == 8
    for level in range(3):  # each concatenation is fused back to the block width before the block reads it
        fuse = space.nodes[f"t1_dec{level}_fuse"]
        assert fuse.preds == (f"t1_cat{level}",) and not fuse.pre_relu and fuse.ops == ("conv3x3",)
        assert space.nodes[f"t1_dec{level}_n1"].preds == (fuse.name,)
    assert "resblock3x3" in space.choices()["op:t1_enc2_n1"].values
    assert "area_down_conv3x3" in space.choices()["op:t1_enc0_down"].values
    supernet = Supernet(space)
    x = torch.rand(2, 1, 16, 24)
    archs = [space.largest(), space.smallest(), *(space.sample(seed) for seed in range(4))]
    archs.append({**space.largest(), **{label: "resblock3x3" for label, choice in space.choices().items()
                                        if choice.kind == "op" and "resblock3x3" in choice.values}})
    for arch in archs:
        torch.testing.assert_close(extract(supernet, arch)(x), supernet(x, arch), rtol=1e-4, atol=1e-5)
    relaxed = ArchParameters(space)
    assert supernet(x, relaxed.relaxed()).shape == x.shape  # every candidate at once, as DARTS runs them


def test_growth_doubles_the_channels_at_each_level_down_and_extracts() -> None:
    space = mod_unet(levels=2, channels=8, layers=2, group=4, growth=2, fusion="conv3x3")
    widest = {label: max(choice.values) for label, choice in space.choices().items() if choice.kind == "width"}
    # a down layer produces its coarser level's channels, an up layer its finer level's
    assert (widest["width:t1_head"], widest["width:t1_enc0_n2"], widest["width:t1_enc0_down"]) == (8, 8, 16)
    assert (widest["width:t1_enc1_down"], widest["width:t1_dec2_n1"], widest["width:t1_dec2_up"]) == (32, 32, 16)
    assert (widest["width:t1_dec1_fuse"], widest["width:t1_dec1_up"], widest["width:t1_dec0_n2"]) == (16, 8, 8)
    assert space.choices()["width:t1_dec2_n1"].values == (4, 8, 12, 16, 20, 24, 28, 32)
    flat = mod_unet(levels=2, channels=8, layers=2, group=4, fusion="conv3x3")
    assert cost(space, space.largest()).flops_per_pixel > cost(flat, flat.largest()).flops_per_pixel
    supernet = Supernet(space)
    x = torch.rand(2, 1, 16, 24)
    for arch in (space.largest(), space.smallest(), space.sample(1)):
        torch.testing.assert_close(extract(supernet, arch)(x), supernet(x, arch), rtol=1e-4, atol=1e-5)
    assert supernet(x, ArchParameters(space).relaxed()).shape == x.shape
    with pytest.raises(ValueError, match="growth"):
        mod_unet(growth=0)


def test_paper_sized_space_matches_the_papers_parameter_counts() -> None:
    # MoD-NAS reports 418k (T=1) and 1253k (T=3) parameters for its searched networks
    for stages, reported in ((1, 418e3), (3, 1253e3)):
        space = mod_unet(stages=stages)
        assert abs(cost(space, space.largest()).params / reported - 1) < 0.06


def test_skipped_layers_are_dead_and_cost_nothing() -> None:
    space = mod_unet(stages=1, levels=1, channels=16, layers=3)
    deep = space.largest()  # layer 3 reads layer 2 (the last candidate)
    shallow = dict(deep, **{"input:t1_enc0_n3": "t1_head"})
    assert {"t1_enc0_n1", "t1_enc0_n2"} <= live_nodes(space, deep)
    assert not {"t1_enc0_n1", "t1_enc0_n2"} & live_nodes(space, shallow)
    conv = 9 * 16 * 16  # a 16→16 conv 3x3's multiply-adds per pixel
    assert cost(space, deep).macs_per_pixel - cost(space, shallow).macs_per_pixel == pytest.approx(2 * conv)
    supernet = Supernet(space)
    x = torch.rand(1, 1, 16, 16)
    static = extract(supernet, shallow)
    assert "t1_enc0_n1" not in static.layers
    torch.testing.assert_close(static(x), supernet(x, shallow), rtol=1e-4, atol=1e-5)


def _separately(layer: MixedOp, x: torch.Tensor, weights: torch.Tensor, out: int) -> torch.Tensor:
    return sum(w * candidate(x, out) for w, candidate in zip(weights, layer.candidates.values()))


@pytest.mark.parametrize("ops", [("conv3x3", "conv5x5", "dilconv3x3", "sepconv3x3", "identity"),
                                 tuple(NORMAL_OPS),
                                 ("conv3x3_s2", "conv5x5_s2", "maxpool_conv1x1")])
def test_collapsed_mixed_convolution_is_exact_with_gradients(ops: tuple[str, ...]) -> None:
    torch.manual_seed(0)
    layer = MixedOp(ops, 8, 8)
    x = torch.randn(2, 8, 12, 12)
    alpha = torch.randn(len(ops), requires_grad=True)
    fused = layer(x, torch.softmax(alpha, 0), 8)
    reference = _separately(layer, x, torch.softmax(alpha, 0), 8)
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-5)
    probe = torch.randn_like(fused)
    grads = torch.autograd.grad((fused * probe).sum(), [alpha, *layer.parameters()])
    grads_ref = torch.autograd.grad((reference * probe).sum(), [alpha, *layer.parameters()])
    for g, ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5)


def test_relaxed_supernet_equals_discrete_when_alpha_is_one_hot() -> None:
    space = mod_unet(stages=2, levels=1, channels=16, layers=3)
    supernet = Supernet(space)
    arch = dict(space.sample(5), **{label: c.largest() for label, c in space.choices().items() if c.kind == "width"})
    relaxed = {}
    for label, choice in space.choices().items():
        if choice.kind == "width":
            relaxed[label] = torch.ones(space.nodes[choice.nodes[0]].channels)
        else:
            relaxed[label] = torch.nn.functional.one_hot(torch.tensor(choice.values.index(arch[label])),
                                                         len(choice.values)).float()
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(supernet(x, relaxed), supernet(x, arch), rtol=1e-4, atol=1e-5)


def test_derivation_rules() -> None:
    space = mod_unet(stages=1, levels=1, channels=32, layers=3)
    params = ArchParameters(space)
    with torch.no_grad():
        params.alphas["op:t1_enc0_n2"].copy_(torch.tensor([0.0, 0.1, 2.0, 0.0, 0.0, 0.0]))
        params.alphas["input:t1_enc0_n3"].copy_(torch.tensor([1.0, 0.0, 0.5]))
        scales = params.scales["width:t1_enc0_n1"]
        scales.fill_(0.01)
        scales[[3, 7, 9, 11, 12, 13, 20, 21, 22, 23, 30]] = torch.tensor([0.9, -0.8, 2.0] + [0.6] * 8)  # 11 > 0.5
        params.scales["width:t1_enc0_n2"].fill_(0.0)
    arch, kept = params.derive(threshold=0.5, group=8)
    assert arch["op:t1_enc0_n2"] == "dilconv3x3"  # argmax
    assert arch["input:t1_enc0_n3"] == "t1_head"  # the single most probable input
    assert arch["width:t1_enc0_n1"] == 16  # 11 channels above the threshold, rounded up to a multiple of 8
    assert {3, 7, 9} <= set(kept["width:t1_enc0_n1"]) and len(kept["width:t1_enc0_n1"]) == 16  # top-k magnitudes
    assert arch["width:t1_enc0_n2"] == 8  # none above: the narrowest width
    assert arch["width:t1_head"] == 32  # untouched scales (1.0) keep every channel
    space.check(arch)
    # decided 0.5: dilconv3x3 (p = 0.59) and t1_head (0.51) stand; the near-uniform labels take the reference
    confident, _ = params.derive(threshold=0.5, group=8, decided=0.5)
    assert confident["op:t1_enc0_n2"] == "dilconv3x3" and confident["input:t1_enc0_n3"] == "t1_head"
    reference = space.largest()
    assert all(confident[label] == reference[label] for label in params.alphas
               if label not in ("op:t1_enc0_n2", "input:t1_enc0_n3"))
    assert params.derive(threshold=0.5, group=8, decided=0.6)[0]["input:t1_enc0_n3"] == reference[
        "input:t1_enc0_n3"] == "t1_enc0_n2"  # 0.51 < 0.6: the previous layer
    # one threshold per kind: the op (0.59) passes 0.5, the input (0.51) does not pass 0.6; a kind left out is argmax
    per_kind, _ = params.derive(threshold=0.5, group=8, decided={"op": 0.5, "input": 0.6})
    assert per_kind["op:t1_enc0_n2"] == "dilconv3x3" and per_kind["input:t1_enc0_n3"] == "t1_enc0_n2"
    inputs_only, _ = params.derive(threshold=0.5, group=8, decided={"input": 0.6})
    assert inputs_only["input:t1_enc0_n3"] == "t1_enc0_n2"
    assert all(inputs_only[label] == arch[label] for label in params.alphas if label.startswith("op:"))
    # a label without evidence keeps the reference however sure its softmax; the others keep their argmax
    unproven, _ = params.derive(threshold=0.5, group=8, undecided={"op:t1_enc0_n2"})
    assert unproven["op:t1_enc0_n2"] == reference["op:t1_enc0_n2"] == "conv3x3"
    assert all(unproven[label] == arch[label] for label in params.alphas if label != "op:t1_enc0_n2")


@pytest.mark.parametrize("decided", [1.5, {"op": 0.5, "widht": 0.7}, {"input": -0.1}, {"op": "high"}])
def test_darts_refuses_a_bad_decided(decided: object) -> None:
    with pytest.raises(ValueError, match="decided: expected a probability in"):
        DartsConfig(decided=decided)


def test_a_recipe_gives_decided_per_kind() -> None:
    recipe = _search_recipe()
    recipe["stages"][0]["decided"] = {"op": 0.5, "input": 0.7}
    assert parse_recipe(recipe).stages[0].options.decided == {"op": 0.5, "input": 0.7}


@pytest.mark.parametrize("target", [30e3, 60e3, 90e3])
def test_derivation_to_a_flops_target_lands_within_one_width_group(target: float) -> None:
    space = mod_unet(stages=1, levels=1, channels=32, layers=3)
    params = ArchParameters(space)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for scales in params.scales.values():
            scales.copy_(torch.rand(scales.shape, generator=generator))
    arch, _ = params.derive(threshold=0.5, group=8, flops_target=target)
    flops = cost(space, arch).flops_per_pixel
    widths = [label for label in space.choices() if label.startswith("width:")]
    one_group = max(cost(space, {**arch, label: arch[label] + 8}).flops_per_pixel - flops
                    for label in widths if arch[label] < 32)
    assert target - one_group < flops <= target  # within one width group below the target
    smallest, _ = params.derive(threshold=0.5, group=8, flops_target=1.0)  # out of reach: the smallest widths
    assert all(smallest[label] == 8 for label in smallest if label.startswith("width:"))


def test_uniform_widths_keep_one_fraction_of_every_label_whatever_the_scales() -> None:
    space = mod_unet(stages=1, levels=1, channels=32, layers=3)
    params = ArchParameters(space)
    with torch.no_grad():
        for index, scales in enumerate(params.scales.values()):
            scales.copy_(torch.linspace(0, 1, len(scales)) if index % 2 else torch.rand(len(scales)))
    half = cost(space, {**space.largest(), **{label: 16 for label in space.choices() if label.startswith("width:")}})
    arch, kept = params.derive(threshold=0.5, group=8, flops_target=half.flops_per_pixel + 1, decided=1.0,
                               widths="uniform")  # decided 1: the reference ops, those of ``half``
    assert {arch[label] for label in kept} == {16}  # half of 32 everywhere, the largest fraction that fits
    assert all(channels == list(range(16)) for channels in kept.values())  # the first ones, as extraction takes
    with pytest.raises(ValueError, match="flops_target"):
        params.derive(threshold=0.5, widths="uniform")  # no target: no fraction to keep


def test_per_flop_widths_keep_cheap_channels_first_and_ignore_each_layers_scale() -> None:
    space = mod_unet(stages=1, levels=1, channels=32, layers=3)
    params = ArchParameters(space)
    importance = params.importance_per_flop(space.largest())
    full = cost(space, space.largest()).flops_per_pixel
    for label in ("width:t1_enc0_n2", "width:t1_dec1_n2"):  # equal scales: 1 / the FLOPs one channel costs
        saved = full - cost(space, {**space.largest(), label: 8}).flops_per_pixel
        torch.testing.assert_close(importance[label], torch.full((32,), 24 / saved))
    bottom = [label for label in importance if "dec1" in label]  # half resolution: a quarter of the cost
    assert importance[bottom[0]][0] > 3 * importance["width:t1_enc0_n2"][0]
    target = 0.7 * full
    arch, _ = params.derive(threshold=0.5, group=8, flops_target=target, decided=1.0, widths="per_flop")
    assert all(arch[label] == 32 for label in bottom)  # the cheap channels are kept whole
    assert cost(space, arch).flops_per_pixel <= target < full
    with torch.no_grad():  # a layer's scales times 10 (as the next layer's weights could absorb) change nothing
        params.scales["width:t1_enc0_n2"].mul_(10)
    assert params.derive(threshold=0.5, group=8, flops_target=target, decided=1.0, widths="per_flop")[0] == arch
    with pytest.raises(ValueError, match="flops_target"):
        params.derive(threshold=0.5, widths="per_flop")


def test_taylor_saliency_is_a_running_mean_of_scale_times_data_gradient_squared() -> None:
    space = mod_unet(stages=1, levels=1, channels=32, layers=3)
    params = ArchParameters(space)
    saliency = TaylorSaliency(params, decay=0.5)
    label = "width:t1_enc0_n2"
    scales = torch.linspace(-1, 1, 32)
    with torch.no_grad():
        params.scales[label].copy_(scales)
    loss = (params.scales[label] * torch.arange(32.0)).sum() + 0.1 * params.width_penalty()
    loss.backward()
    saliency.update(params, width_penalty=0.1)  # the penalty's share of the gradient is taken out
    torch.testing.assert_close(saliency.values[label], 0.5 * (scales * torch.arange(32.0)) ** 2)
    assert all(v.abs().max() < 1e-12 for other, v in saliency.values.items() if other != label)
    restored = TaylorSaliency(params)
    restored.load_state_dict(saliency.state_dict())
    torch.testing.assert_close(restored.values[label], saliency.values[label])


def test_taylor_widths_keep_the_channels_whose_removal_costs_most_loss_per_flop() -> None:
    space = mod_unet(stages=1, levels=1, channels=32, layers=3)
    params = ArchParameters(space)
    saliency = TaylorSaliency(params)
    costs = params.channel_costs(space.largest())
    for label, values in saliency.values.items():
        values.fill_(costs[label])  # the same loss per FLOP everywhere ...
    salient = "width:t1_enc0_n2"
    saliency.values[salient][5:] *= 100  # ... but for one dear full-resolution layer's channels 5-31
    full = cost(space, space.largest()).flops_per_pixel
    arch, kept = params.derive(0.5, 8, 0.7 * full, decided=1.0, widths="taylor", saliency=saliency.values)
    assert cost(space, arch).flops_per_pixel <= 0.7 * full
    assert arch[salient] == 32 and kept[salient][:1] == [0]  # kept whole: its channels 5-31, rounded up to 32
    assert min(arch[label] for label in kept) < 32  # the rest paid for the target
    with pytest.raises(ValueError, match="taylor"):
        params.derive(0.5, 8, 0.7 * full, widths="taylor")  # no saliency to rank by


def test_nm_choices_stay_dense_in_the_relaxation() -> None:
    from nasden.search_spaces.toy import toy

    params = ArchParameters(toy())
    assert params.relaxed()["nm:branch"] == "4:4"
    assert params.derive(0.5)[0]["nm:branch"] == "4:4"


def spy(monkeypatch, owner: object, name: str) -> list[tuple[tuple, dict]]:
    """Record every call of ``owner.name`` (a function, method or class, which still runs)."""
    calls: list[tuple[tuple, dict]] = []
    original = getattr(owner, name)

    def recorded(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


def _search_recipe(order: str = "first", space: dict | None = None) -> dict:
    return {"name": "darts-test", "seed": 0, "device": "cpu",
            "data": {"patch": 16, "batch": 2, "val_images": 1, "val_crop": 32, "noise": {"sigma": 25}},
            "space": space or {"name": "toy"},
            "stages": [{"strategy": "darts", "steps": 20, "warmup": 5, "order": order, "log_every": 5,
                        "val_every": 10, "val_size": 32}]}


def test_twenty_step_search_logs_alpha_to_tensorboard(tmp_path) -> None:
    run_dir = create_run(parse_recipe(_search_recipe(), "<test>"), tmp_path / "run")
    summary = execute(run_dir, quiet=True)[0]
    assert len(summary["supernet_val_psnr"]) == 2
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0}).Reload()
    tags = events.Tags()
    for candidate in ("conv3x3", "sepconv3x3", "dilconv3x3"):
        assert [e.step for e in events.Scalars(f"arch/op:stem/{candidate}")] == [5, 10, 15, 20]
    assert "arch/input:mid/skip" in tags["scalars"] and "arch/width:outer" in tags["histograms"]
    assert any(tag.endswith("derived_flops_per_pixel") for tag in tags["scalars"])
    probs = [e.value for e in events.Scalars("arch/op:stem/conv3x3")]
    assert probs[0] != probs[-1]  # the architecture parameters move after the warm-up
    assert (run_dir / "stages/00-darts/derived.png").stat().st_size > 1000
    assert summary["arch"]["op:stem"] in ("conv3x3", "sepconv3x3", "dilconv3x3")
    assert [e.step for e in events.Scalars("arch_consistency/op:stem")] == [5, 10, 15, 20]
    assert summary["gradient_consistency"].keys() == summary["largest_probability"].keys()
    assert all(0 < v <= 1 for v in summary["gradient_consistency"].values())
    assert summary["consistency_noise_floor"] == pytest.approx(1 / math.sqrt(15))  # 20 steps, 5 of warm-up


def test_gradient_consistency_is_one_for_steady_pushes_and_zero_for_cancelling_ones() -> None:
    params = ArchParameters(SearchSpace(dncnn_graph(depth=4, channels=4, bn=False, ops=["conv3x3", "identity"]),
                                        "dncnn"))
    steady, cancelling = list(params.alphas)
    consistency = GradientConsistency(params)
    for sign in (1.0, -1.0, 1.0, -1.0):
        params.alphas[steady].grad = torch.tensor([0.5, -0.5]) * (2 + sign)  # always towards candidate 1
        params.alphas[cancelling].grad = torch.tensor([1.0, -1.0]) * sign
        consistency.update(params)
    values = consistency.values()
    # steady: ‖Σg‖ = 0.5·√2·(1+3+1+3) and Σ‖g‖² = 0.5·(1+9+1+9), so ‖Σg‖/√(4Σ‖g‖²) = 8/√80
    assert values[steady] == pytest.approx(8 / math.sqrt(80))
    assert values[cancelling] == 0
    assert consistency.noise_floor() == 0.5
    restored = GradientConsistency(params)
    restored.load_state_dict(consistency.state_dict())
    assert restored.values() == values and restored.noise_floor() == 0.5
    # 8/√80 = 0.894 is 1.79 floors: above 1.5 floors, below 2; cancelling (0) is below any positive multiple
    assert consistency.below(1.5) == {cancelling} and consistency.below(2.0) == {steady, cancelling}
    assert consistency.below(0) == set() and GradientConsistency(params).below(0.1) == {steady, cancelling}


def test_search_with_evidence_derives_unproven_labels_to_the_reference(tmp_path) -> None:
    recipe = _search_recipe()
    recipe["stages"][0]["evidence"] = 100.0  # 100 floors of a 15-step search (100/√15) exceed any consistency (≤ 1)
    summary = execute(create_run(parse_recipe(recipe, "<test>"), tmp_path / "run"), quiet=True)[0]
    reference = build_space(recipe["space"]).largest()
    assert summary["no_evidence"] == sorted(summary["largest_probability"])
    assert all(summary["arch"][label] == reference[label] for label in summary["no_evidence"])
    with pytest.raises(ValueError, match="evidence"):
        DartsConfig(evidence=-1)


def test_architecture_steps_draw_arch_batch_patches(tmp_path, monkeypatch) -> None:
    from nasden.data.image_sets import PatchSampler

    sizes: dict[int, set[int]] = {}
    original = PatchSampler.batch

    def spy(self, step, batch=None, stream=0, *args, **kwargs):
        sizes.setdefault(stream, set()).add(batch)
        return original(self, step, batch, stream, *args, **kwargs)

    monkeypatch.setattr(PatchSampler, "batch", spy)
    recipe = _search_recipe()
    recipe["stages"][0].update(batch=2, arch_batch=6)
    execute(create_run(parse_recipe(recipe, "<test>"), tmp_path / "run"), quiet=True)
    weights, architecture = sorted(sizes)  # the stage's two streams: weight steps, then architecture steps
    assert architecture == weights + 1 and sizes[weights] == {2} and sizes[architecture] == {6}
    with pytest.raises(ValueError, match="arch_batch"):
        DartsConfig(arch_batch=0)


def test_search_derives_taylor_widths_within_its_flops_target(tmp_path) -> None:
    recipe = _search_recipe()
    space = build_space(recipe["space"])
    target = 0.8 * cost(space, space.largest()).flops_per_pixel  # ops decided to the reference: the largest's
    recipe["stages"][0].update(widths="taylor", flops_target=target, decided=1.0, group=4)
    summary = execute(create_run(parse_recipe(recipe, "<test>"), tmp_path / "run"), quiet=True)[0]
    assert summary["flops_per_pixel"] <= target
    assert summary["arch"] != space.largest()


def test_second_order_search_runs_and_differs_from_first_order(tmp_path) -> None:
    space = {"name": "dncnn", "depth": 4, "channels": 8, "bn": False, "ops": ["conv3x3", "conv5x5", "identity"]}
    archs = []
    for order in ("first", "second"):
        recipe = _search_recipe(order, space)
        summary = execute(create_run(parse_recipe(recipe, "<test>"), tmp_path / order), quiet=True)[0]
        archs.append(summary["largest_probability"])
    assert archs[0].keys() == archs[1].keys() and archs[0] != archs[1]


def test_sampler_halves_are_disjoint() -> None:
    from nasden.data.image_sets import DataConfig, RunData

    sampler = RunData(DataConfig(patch=16), 1, 0).sampler
    weights, arch = sampler.halves()
    assert len(weights.clean) + len(arch.clean) == len(sampler.clean)
    assert not {id(t) for t in weights.clean} & {id(t) for t in arch.clean}


def test_collapse_plan_keeps_a_wide_dilated_kernel_apart() -> None:
    from nasden.core.ops.mixed import collapse_plan

    layer = MixedOp(tuple(NORMAL_OPS), 8, 8)
    groups, apart = collapse_plan(list(layer.candidates.values()))
    names = list(layer.candidates)
    assert [sorted(names[i] for i in group) for group in groups] == [["conv3x3", "conv5x5", "dilconv3x3"]]
    assert [names[i] for i in apart] == ["dilconv5x5", "sepconv3x3", "sepconv5x5"]


def test_second_order_architecture_gradient_matches_finite_differences() -> None:
    """DARTS's unrolled gradient d/da L_val(w - xi grad_w L_train(w, a), a) against central differences of that
    very function, in float64 on a two-candidate toy (the Hessian term is itself a finite difference)."""
    from nasden.strategies.darts import Search, unrolled_arch_gradients

    space = SearchSpace(dncnn_graph(depth=3, channels=4, bn=False, ops=["conv3x3", "identity"]), "dncnn")
    search = Search(Supernet(space), ArchParameters(space, init_std=0.5)).double()
    generator = torch.Generator().manual_seed(0)
    train = [torch.rand(2, 1, 6, 6, generator=generator, dtype=torch.float64) for _ in range(2)]
    val = [torch.rand(2, 1, 6, 6, generator=generator, dtype=torch.float64) for _ in range(2)]
    xi = 0.05

    def train_loss() -> torch.Tensor:
        return F.mse_loss(search(train[0]), train[1])

    def unrolled_val_loss() -> float:
        weights = [p for p in search.supernet.parameters()]
        saved = [w.detach().clone() for w in weights]
        grads = torch.autograd.grad(train_loss(), weights)
        with torch.no_grad():
            for w, g in zip(weights, grads):
                w.sub_(xi * g)
            value = F.mse_loss(search(val[0]), val[1]).item()
            for w, w0 in zip(weights, saved):
                w.copy_(w0)
        return value

    unrolled_arch_gradients(search, train_loss, lambda: F.mse_loss(search(val[0]), val[1]), xi)
    alpha = next(iter(search.arch.alphas.values()))
    analytic = alpha.grad.clone()
    numeric = torch.zeros_like(alpha)
    h = 1e-5
    for i in range(alpha.numel()):
        with torch.no_grad():
            alpha[i] += h
        plus = unrolled_val_loss()
        with torch.no_grad():
            alpha[i] -= 2 * h
        minus = unrolled_val_loss()
        with torch.no_grad():
            alpha[i] += h
        numeric[i] = (plus - minus) / (2 * h)
    assert analytic.abs().max() > 1e-6  # not a vacuous comparison
    torch.testing.assert_close(analytic, numeric, rtol=1e-3, atol=1e-8)


def _two_candidates() -> ArchParameters:
    g = nx.DiGraph(residual=False)
    g.add_node("in", op="input", channels=1)
    g.add_node("c1", op=["conv3x3", "conv5x5"], channels=1)
    g.add_node("out", op="output")
    g.add_edges_from([("in", "c1"), ("c1", "out")])
    arch = ArchParameters(SearchSpace(g))
    with torch.no_grad():
        arch.alphas["op:c1"].copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax: 1/4, 3/4
    return arch


def test_temperature_entropy_and_beta_change_alpha_as_computed_by_hand() -> None:
    arch = _two_candidates()
    torch.testing.assert_close(arch.relaxed()["op:c1"], torch.tensor([0.25, 0.75]))
    arch.temperature = 0.5  # softmax(2 alpha) = (1, 9) / 10: sharper, same order
    torch.testing.assert_close(arch.relaxed()["op:c1"], torch.tensor([0.1, 0.9]))
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(arch.entropy().detach()) == pytest.approx(entropy)
    (grad,) = torch.autograd.grad(arch.entropy(), [arch.alphas["op:c1"]])
    # dH/dalpha_i = -p_i (log p_i + H): descending H raises the likelier candidate's alpha
    expected = [-p * (math.log(p) + entropy) for p in (0.25, 0.75)]
    torch.testing.assert_close(grad, torch.tensor(expected))
    assert grad[1] < 0 < grad[0]
    (grad,) = torch.autograd.grad(arch.beta_regulariser(), [arch.alphas["op:c1"]])
    torch.testing.assert_close(grad, torch.tensor([0.25, 0.75]))  # d logsumexp / d alpha = softmax
    assert annealed_temperature(1.0, 0.1, 0.5) == pytest.approx(math.sqrt(0.1))
    assert annealed_temperature(1.0, None, 0.7) == 1.0 and annealed_temperature(2.0, 0.5, 1.5) == 0.5


def test_expected_flops_prices_each_candidate_and_pushes_towards_the_cheaper() -> None:
    arch = _two_candidates()  # conv 3x3 / 5x5, one channel: 18 / 50 FLOPs per pixel, probabilities 1/4, 3/4
    torch.testing.assert_close(arch.candidate_flops()["op:c1"], torch.tensor([18.0, 50.0]))
    expected = arch.expected_flops()
    assert float(expected) == pytest.approx(0.25 * 18 + 0.75 * 50)  # 42
    (grad,) = torch.autograd.grad(torch.log(expected), [arch.alphas["op:c1"]])
    # d log E / d alpha_k = p_k (F_k - E) / E: descending it raises the cheaper candidate's alpha
    torch.testing.assert_close(grad, torch.tensor([0.25 * (18 - 42) / 42, 0.75 * (50 - 42) / 42]))
    arch.shrink(1)  # the 3x3 dropped (less probable): the 5x5 for sure, and nothing left to push
    assert float(arch.expected_flops()) == pytest.approx(50.0)


def test_a_flops_penalty_makes_the_search_choose_cheap_candidates(tmp_path) -> None:
    recipe = _search_recipe()
    recipe["stages"][0]["flops_penalty"] = 100.0  # prices far above what 15 steps of log MSE can say
    summary = execute(create_run(parse_recipe(recipe), tmp_path / "priced"), quiet=True)[0]
    arch = ArchParameters(build_space(recipe["space"]))
    priced = 0
    for label, flops in arch.candidate_flops().items():
        if len(set(flops.tolist())) > 1:  # a choice whose candidates cost differently: a cheapest one won
            chosen = arch.space.choices()[label].values.index(summary["arch"][label])
            assert flops[chosen] == flops.min(), label
            priced += 1
    assert priced == 5  # every choice of the toy space: its input, and four ops
    with pytest.raises(ValueError, match="flops_penalty"):
        DartsConfig(flops_penalty=-1.0)


def test_rms_mixing_divides_an_op_choices_weights_by_their_l2_norm() -> None:
    arch = _two_candidates()  # softmax (1/4, 3/4), L2 norm sqrt(10)/4
    arch.rms_mixing = True
    torch.testing.assert_close(arch.relaxed()["op:c1"], torch.tensor([1 / math.sqrt(10), 3 / math.sqrt(10)]))
    torch.testing.assert_close(arch.relaxed(hard=True)["op:c1"], torch.tensor([0.0, 1.0]))  # one path: unchanged
    with torch.no_grad():
        arch.alphas["op:c1"].copy_(torch.tensor([0.0, 50.0]))  # one-hot in effect: the candidate runs at weight 1
    torch.testing.assert_close(arch.relaxed()["op:c1"], torch.tensor([0.0, 1.0]))
    space = mod_unet(levels=1, channels=8, layers=3)
    relaxed = ArchParameters(space, rms_mixing=True).relaxed()
    for label, weights in relaxed.items():
        if label.startswith("input:"):  # inputs are correlated, not independent: their mixing stays a mean
            torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
        elif label.startswith("op:"):
            torch.testing.assert_close(weights.norm(), torch.tensor(1.0))


def test_a_validation_at_a_checkpoint_step_is_in_the_checkpoint(tmp_path) -> None:
    from nasden.testing.conformance import Interrupted, interrupt_after_first_checkpoint

    recipe = _search_recipe()
    recipe["stages"][0]["checkpoint_every"] = 10  # = val_every: the checkpoint at step 10 follows its validation
    straight = execute(create_run(parse_recipe(recipe), tmp_path / "straight"), quiet=True)[0]
    assert [step for step, _ in straight["supernet_val_psnr"]] == [10, 20]
    resumed = create_run(parse_recipe(recipe), tmp_path / "resumed")
    with interrupt_after_first_checkpoint(0), pytest.raises(Interrupted):
        execute(resumed, quiet=True)
    assert execute(resumed, quiet=True)[0] == straight


def test_signal_options_reach_the_search_and_resume(tmp_path, monkeypatch) -> None:
    from nasden.testing.conformance import Interrupted, interrupt_after_first_checkpoint

    plain = execute(create_run(parse_recipe(_search_recipe()), tmp_path / "plain"), quiet=True)[0]
    recipe = _search_recipe()
    recipe["stages"][0].update(weight_init="he", mixing="rms", checkpoint_every=8)
    drawn, mixing = spy(monkeypatch, darts, "initialise"), spy(monkeypatch, darts, "ArchParameters")
    straight = execute(create_run(parse_recipe(recipe), tmp_path / "straight"), quiet=True)[0]
    assert [args[1] for args, _ in drawn] == ["he"] and [kw["rms_mixing"] for _, kw in mixing] == [True]
    assert straight["largest_probability"].keys() == plain["largest_probability"].keys()
    resumed = create_run(parse_recipe(recipe), tmp_path / "resumed")
    with interrupt_after_first_checkpoint(0), pytest.raises(Interrupted):
        execute(resumed, quiet=True)
    assert execute(resumed, quiet=True)[0] == straight  # the checkpoint's weights, not a second He draw
    for bad in ({"mixing": "mean"}, {"weight_init": "xavier"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DartsConfig(**bad)


def test_the_sharpening_options_reach_the_search(tmp_path, monkeypatch) -> None:
    sharp = _search_recipe()
    sharp["stages"][0].update(temperature=1.0, temperature_min=0.1, entropy_penalty=1.0, beta_penalty=1.0)
    temperatures = spy(monkeypatch, darts, "annealed_temperature")
    execute(create_run(parse_recipe(sharp), tmp_path / "sharp"), quiet=True)
    annealed = [annealed_temperature(*args) for args, _ in temperatures]
    assert annealed and annealed == sorted(annealed, reverse=True) and annealed[-1] < 1.0  # the softmax sharpens


def test_gumbel_sampling_is_softmax_of_noisy_alpha_and_hard_is_straight_through() -> None:
    arch = _two_candidates()  # alpha = (0, log 3)
    noise = {"op:c1": torch.tensor([math.log(6.0), 0.0])}  # alpha + g = (log 6, log 3): softmax (2/3, 1/3)
    torch.testing.assert_close(arch.relaxed(noise)["op:c1"], torch.tensor([2 / 3, 1 / 3]))
    arch.temperature = 0.5  # softmax(2 (alpha + g)) = (36, 9) / 45
    torch.testing.assert_close(arch.relaxed(noise)["op:c1"], torch.tensor([0.8, 0.2]))
    hard = arch.relaxed(noise, hard=True)["op:c1"]
    torch.testing.assert_close(hard, torch.tensor([1.0, 0.0]))  # the sample's argmax, not alpha's
    torch.testing.assert_close(arch.relaxed(hard=True)["op:c1"], torch.tensor([0.0, 1.0]))  # no noise: alpha's
    probe = torch.tensor([1.0, -2.0])
    (straight_through,) = torch.autograd.grad((hard * probe).sum(), [arch.alphas["op:c1"]])
    (soft,) = torch.autograd.grad((arch.relaxed(noise)["op:c1"] * probe).sum(), [arch.alphas["op:c1"]])
    torch.testing.assert_close(straight_through, soft)
    # d/dalpha of softmax(2 (alpha + g)) . probe = 2 p (probe - p . probe), p = (0.8, 0.2), p . probe = 0.4
    torch.testing.assert_close(soft, torch.tensor([2 * 0.8 * 0.6, 2 * 0.2 * -2.4]))
    draws = torch.cat([arch.gumbel_noise(torch.Generator().manual_seed(i))["op:c1"] for i in range(5000)])
    assert float(draws.mean()) == pytest.approx(0.5772, abs=0.05)  # a standard Gumbel's mean: Euler's constant
    assert float((draws <= 0).float().mean()) == pytest.approx(math.exp(-1), abs=0.02)  # its CDF at 0: e^-1
    again = arch.gumbel_noise(torch.Generator().manual_seed(7))["op:c1"]
    torch.testing.assert_close(again, arch.gumbel_noise(torch.Generator().manual_seed(7))["op:c1"])


def test_hard_gumbel_search_runs_the_sampled_path_alone() -> None:
    from nasden.strategies.darts import Search

    space = mod_unet(stages=2, levels=1, channels=16, layers=3)
    supernet = Supernet(space)
    params = ArchParameters(space)
    search = Search(supernet, params, hard=True)
    search.noise = params.gumbel_noise(torch.Generator().manual_seed(3))
    sampled = {label: space.choices()[label].values[int((alpha + search.noise[label]).argmax())]
               for label, alpha in params.alphas.items()}
    sampled.update({label: c.largest() for label, c in space.choices().items() if c.kind == "width"})
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(search(x), supernet(x, sampled), rtol=1e-4, atol=1e-5)
    assert sampled != space.largest()  # a sampled path, not the reference one


def test_gumbel_sampling_reaches_the_search(tmp_path, monkeypatch) -> None:
    plain = execute(create_run(parse_recipe(_search_recipe()), tmp_path / "plain"), quiet=True)[0]
    for sampling in ("gumbel", "gumbel_hard"):
        recipe = _search_recipe()
        recipe["stages"][0]["sampling"] = sampling
        noise, searches = spy(monkeypatch, ArchParameters, "gumbel_noise"), spy(monkeypatch, darts, "Search")
        summary = execute(create_run(parse_recipe(recipe), tmp_path / sampling), quiet=True)[0]
        assert noise and [kw["hard"] for _, kw in searches] == [sampling == "gumbel_hard"]
        assert summary["largest_probability"].keys() == plain["largest_probability"].keys()
        assert len(summary["supernet_val_psnr"]) == 2
    with pytest.raises(ValueError, match="sampling"):
        DartsConfig(sampling="gumble")


def test_hard_sample_runs_one_candidate_and_alpha_learns_through_its_weight() -> None:
    from nasden.strategies.darts import Search

    arch = _two_candidates()  # alpha = (0, log 3); conv3x3 or conv5x5 on one channel
    supernet = Supernet(arch.space)
    search = Search(supernet, arch, hard=True)
    search.noise = {"op:c1": torch.tensor([math.log(6.0), 0.0])}  # the sample: conv3x3 (soft p = (2/3, 1/3))
    x, probe = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    loss = (search(x) * probe).sum()
    loss.backward()
    conv3, conv5 = (supernet.layers["c1"].candidates[name] for name in ("conv3x3", "conv5x5"))
    assert all(p.grad is None for p in conv5.parameters())  # it did not run
    assert all(p.grad is not None for p in conv3.parameters())
    # loss = h0 · <conv3x3(x), probe> with h0 = 1 in value and d h0 / d alpha = p0 (e0 - p)
    sampled = float((conv3(x, 1, None) * probe).sum().detach())
    assert loss.item() == pytest.approx(sampled, rel=1e-5)
    p0 = 2 / 3
    torch.testing.assert_close(arch.alphas["op:c1"].grad, torch.tensor([sampled * p0 * (1 - p0), -sampled * p0 / 3]))


def _three_candidates() -> ArchParameters:
    g = nx.DiGraph(residual=False)
    g.add_node("in", op="input", channels=1)
    g.add_node("c1", op=["conv3x3", "conv5x5", "dilconv3x3"], channels=1)
    g.add_node("out", op="output")
    g.add_edges_from([("in", "c1"), ("c1", "out")])
    arch = ArchParameters(SearchSpace(g))
    with torch.no_grad():
        arch.alphas["op:c1"].copy_(torch.tensor([0.0, math.log(3.0), math.log(2.0)]))  # softmax: 1/6, 1/2, 1/3
    return arch


def test_shrinking_drops_the_least_probable_candidates_for_good() -> None:
    arch = _three_candidates()
    assert arch.shrink(2) == {"op:c1": ["conv3x3"]}
    assert arch.shrink(2) == {} and arch.shrink(2, kind="input") == {}
    torch.testing.assert_close(arch.relaxed()["op:c1"], torch.tensor([0.0, 0.6, 0.4]))  # (3, 2) / 5
    assert arch.probabilities()["op:c1"] == pytest.approx({"conv3x3": 0.0, "conv5x5": 0.6, "dilconv3x3": 0.4})
    entropy = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))  # over the two left
    assert float(arch.entropy().detach()) == pytest.approx(entropy)
    (grad,) = torch.autograd.grad(arch.entropy() + arch.beta_regulariser(), [arch.alphas["op:c1"]])
    assert grad[0] == 0 and torch.isfinite(grad).all()  # a dropped candidate gets no push
    probe = torch.tensor([5.0, 1.0, -1.0])
    (grad,) = torch.autograd.grad((arch.relaxed()["op:c1"] * probe).sum(), [arch.alphas["op:c1"]])
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.6 * 0.8, 0.4 * -1.2]))  # p_i (probe_i - p . probe)
    noise = {"op:c1": torch.tensor([9.0, 0.0, 0.0])}  # a Gumbel draw cannot bring a dropped candidate back
    assert arch.relaxed(noise, hard=True)["op:c1"][0] == 0
    with torch.no_grad():
        arch.alphas["op:c1"][0] = 5.0  # nor can its alpha
    assert arch.derive(threshold=0.5)[0]["op:c1"] == "conv5x5"
    restored = _three_candidates()
    restored.load_state_dict(arch.state_dict())
    assert restored.active.get_buffer("op:c1").tolist() == [False, True, True]
    assert restored.shrink(1) == {"op:c1": ["dilconv3x3"]}
    older = {key: value for key, value in arch.state_dict().items() if not key.startswith("active.")}
    restored.load_state_dict(older)  # a checkpoint from before shrinking: every candidate active
    assert restored.active.get_buffer("op:c1").all()


def test_a_zero_weight_candidate_does_not_run() -> None:
    layer = MixedOp(("conv3x3", "conv5x5", "sepconv3x3"), 4, 4)
    x = torch.rand(2, 4, 8, 8)
    weights = torch.tensor([0.0, 0.7, 0.3], requires_grad=True)
    out = layer(x, weights, 4)
    expected = 0.7 * layer(x, "conv5x5", 4) + 0.3 * layer(x, "sepconv3x3", 4)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert all(p.grad is None for p in layer.candidates["conv3x3"].parameters())
    assert all(p.grad is not None for p in layer.candidates["conv5x5"].parameters())
    assert weights.grad[0] == 0 and weights.grad[1] != 0


def test_progressive_shrinking_runs_and_resumes(tmp_path) -> None:
    from nasden.strategies.darts import shrink_steps
    from nasden.testing.conformance import Interrupted, interrupt_after_first_checkpoint

    assert shrink_steps(DartsConfig(steps=12, warmup=2, shrink=[2, 1])) == {5: 2, 8: 1}  # 10 steps in 3 stages
    recipe = _search_recipe()
    recipe["stages"][0].update(steps=12, warmup=2, shrink=[2, 1], checkpoint_every=6)
    straight = execute(create_run(parse_recipe(recipe), tmp_path / "straight"), quiet=True)[0]
    ops = {label: p for label, p in straight["largest_probability"].items() if label.startswith("op:")}
    assert ops and all(p == 1.0 for p in ops.values())  # one candidate left in every op choice
    assert any(p < 1.0 for label, p in straight["largest_probability"].items() if label.startswith("input:"))
    resumed = create_run(parse_recipe(recipe), tmp_path / "resumed")
    with interrupt_after_first_checkpoint(0), pytest.raises(Interrupted):  # at step 6, after the first shrink
        execute(resumed, quiet=True)
    saved = torch.load(resumed / "stages/00-darts/checkpoint.pt", weights_only=False)["module"]
    masks = [mask for key, mask in saved.items() if key.startswith("arch.active.op:")]
    assert masks and all(int(mask.sum()) == 2 for mask in masks)  # the checkpoint keeps what was dropped
    assert execute(resumed, quiet=True)[0] == straight
    for bad in ([2, 2], [0], [1, 2]):
        with pytest.raises(ValueError, match="shrink"):
            DartsConfig(shrink=bad)


def test_identity_dropout_drops_the_skip_at_its_stage_rate() -> None:
    from nasden.strategies.darts import identity_dropout_rate

    cfg = DartsConfig(steps=12, warmup=2, shrink=[2, 1], identity_dropout=[0.1, 0.4, 0.7])  # stages [0,5) [5,8) [8,12)
    rates = [identity_dropout_rate(cfg, step) for step in (0, 4, 5, 8, 10)]
    assert rates == pytest.approx([0.1, 0.1 * (1 - 4 / 5), 0.4, 0.7, 0.7 * (1 - 2 / 4)])
    assert identity_dropout_rate(DartsConfig(steps=12, warmup=2), 3) == 0.0
    with pytest.raises(ValueError, match="identity_dropout"):
        DartsConfig(shrink=[2], identity_dropout=[0.5])  # two stages need two rates
    layer = MixedOp(("conv3x3", "identity"), 4, 4).requires_grad_(False)
    layer.identity_dropout, layer.generator = 0.5, torch.Generator().manual_seed(0)
    x, weights = torch.rand(2, 4, 16, 16) + 0.1, torch.tensor([0.5, 0.5])
    skip = (layer(x, weights, 4) - 0.5 * layer(x, "conv3x3", 4)) / x  # 0.5 x kept / 0.5: 1 where kept, else 0
    assert set(skip.round(decimals=4).unique().tolist()) == {0.0, 1.0}
    assert float(skip.mean()) == pytest.approx(0.5, abs=0.05)
    layer.generator.manual_seed(0)
    torch.testing.assert_close((layer(x, weights, 4) - 0.5 * layer(x, "conv3x3", 4)) / x, skip)  # seeded draws
    layer.eval()  # validation and extraction see the whole skip
    torch.testing.assert_close(layer(x, weights, 4), 0.5 * layer(x, "conv3x3", 4) + 0.5 * x, rtol=1e-5, atol=1e-6)


def test_identity_dropout_reaches_the_search(tmp_path) -> None:
    space = {"name": "dncnn", "depth": 4, "channels": 4, "bn": False, "ops": ["conv3x3", "identity"]}
    plain = execute(create_run(parse_recipe(_search_recipe(space=space)), tmp_path / "plain"), quiet=True)[0]
    recipe = _search_recipe(space=space)
    recipe["stages"][0]["identity_dropout"] = [0.5]
    dropped = execute(create_run(parse_recipe(recipe), tmp_path / "dropped"), quiet=True)[0]
    assert dropped["largest_probability"].keys() == plain["largest_probability"].keys()
    # the identity leads in both searches; dropping it during the search weakens its lead, as P-DARTS intends
    assert set(dropped["arch"].values()) == set(plain["arch"].values()) == {"identity"}
    assert all(dropped["largest_probability"][k] < plain["largest_probability"][k] for k in plain["arch"])
