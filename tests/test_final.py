"""The model file (nasden.deploy.model_file): one shared weight set behind every candidate of a dynamic denoiser."""
from __future__ import annotations

import copy

import pytest
import torch

from nasden.common.errors import RunError
from nasden.common.registry import SPACES
from nasden.common.storage import save_torch
from nasden.core.dynamic import DynamicDenoiser, batchnorm_statistics
from nasden.core.extract import extract
from nasden.core.gates import ClassifierGate, build_gate
from nasden.core.specs import dynamic_spec
from nasden.core.supernet import Supernet, recalibrate_bn
from nasden.deploy import model_file as final
from nasden.deploy.inference import denoise
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run
from nasden.strategies.class_pruning import branch_archs


class BrightnessGate(torch.nn.Module):
    """Candidate i for images whose mean is nearest (i + 0.5) / E."""

    def __init__(self, candidates: int):
        super().__init__()
        self.centres = (torch.arange(candidates) + 0.5) / candidates
        self.spec = {"kind": "brightness", "candidates": candidates}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(x.mean((1, 2, 3))[:, None] - self.centres).abs()


def _trained_like(supernet: Supernet) -> Supernet:
    """Random non-trivial weights and BatchNorm statistics, so equal outputs mean equal computations."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, tensor in supernet.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) * 0.2 + (0.9 if "var" in name else -0.1))
    return supernet.eval()


SPACES_AND_ARCHS = {
    "slimmable widths": lambda: (SPACES.get("slimmable")(depth=4, channels=16), "widths"),
    "N:M branches": lambda: (SPACES.get("nm_branches")(depth=4, channels=8), "branches"),
    "U-Net ops and widths": lambda: (SPACES.get("mod_unet")(levels=1, channels=8, layers=2), "sampled"),
}


def _archs(space, kind: str) -> list[dict]:
    if kind == "branches":
        return list(branch_archs(space).values())
    if kind == "widths":
        return [space.smallest(), space.sample(3), space.largest()]
    return [space.sample(seed) for seed in (1, 2, 3)]


@pytest.mark.parametrize("name", sorted(SPACES_AND_ARCHS))
def test_shared_weights_compute_what_separately_extracted_candidates_do(name: str) -> None:
    space, kind = SPACES_AND_ARCHS[name]()
    supernet = _trained_like(Supernet(space))
    archs = _archs(space, kind)
    model = DynamicDenoiser(BrightnessGate(len(archs)), supernet, archs, [1.0, 2.0, 3.0]).eval()
    extracted = [extract(supernet, arch).eval() for arch in archs]
    side = 8 * space.resolution_multiple
    x = torch.rand(6, space.in_channels, side, side) * 0.1 + torch.linspace(0, 0.9, 6).view(6, 1, 1, 1)
    with torch.no_grad():
        for view, network in zip(model.candidates, extracted):
            torch.testing.assert_close(view(x), network(x), atol=1e-5, rtol=0)
        choice = model.route(x)
        assert len(set(choice.tolist())) == 3  # the batch mixes every candidate
        expected = torch.cat([extracted[int(c)](x[i: i + 1]) for i, c in enumerate(choice)])
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)
    image = torch.rand(space.in_channels, 2 * side, 3 * side)
    image[..., : side] *= 0.1  # a dark strip routes its tiles elsewhere
    reference = copy.copy(model)  # the same routing and tiling, run by the separately extracted networks
    reference._views = extracted
    for route in ("image", "tile"):
        result = denoise(model, image, space.resolution_multiple, tile=side, overlap=side // 4, route=route)
        expected = denoise(reference, image, space.resolution_multiple, tile=side, overlap=side // 4, route=route)
        assert result.choices == expected.choices and len(set(result.choices)) == (2 if route == "tile" else 1)
        torch.testing.assert_close(result.image, expected.image, atol=1e-5, rtol=0)


def test_shared_weights_are_stored_once() -> None:
    space = SPACES.get("mod_unet")(levels=1, channels=8, layers=2)
    archs = [space.sample(seed) for seed in (1, 2, 3)]
    supernet = Supernet(space)
    model = DynamicDenoiser(BrightnessGate(3), supernet, archs, [1.0, 2.0, 3.0])
    params = sum(p.numel() for p in model.parameters())
    assert params <= sum(p.numel() for p in supernet.parameters())  # candidate ops no architecture uses are gone
    assert params < sum(sum(p.numel() for p in extract(supernet, a).parameters()) for a in archs)
    assert set(model.state_dict()) == {f"network.{k}" for k in model.network.state_dict()}


def test_each_candidate_keeps_its_own_batchnorm_statistics() -> None:
    space = SPACES.get("slimmable")(depth=4, channels=16, bn=True)
    supernet = _trained_like(Supernet(space))
    archs = [space.smallest(), space.largest()]
    batches = [torch.rand(4, 1, 16, 16) for _ in range(2)]
    statistics, extracted = [], []
    for arch in archs:
        recalibrate_bn(supernet, arch, batches)
        statistics.append(batchnorm_statistics(supernet))
        extracted.append(extract(supernet, arch).eval())
    model = DynamicDenoiser(BrightnessGate(2), supernet, archs, [1.0, 2.0], statistics=statistics).eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        for _ in range(2):  # in either order: each candidate swaps its own statistics in
            for view, network in zip(model.candidates, extracted):
                torch.testing.assert_close(view(x), network(x), atol=1e-5, rtol=0)
    rebuilt = final.trained(space, {**dynamic_spec(model), "gate": {"kind": "classifier", "candidates": 2}},
                            {**model.state_dict(), **{f"gate.{k}": v for k, v in
                                                      ClassifierGate(1, 2).state_dict().items()}})
    torch.testing.assert_close(rebuilt.candidates[0](x), extracted[0](x), atol=1e-5, rtol=0)


TINY_DDS = {"name": "t", "device": "cpu", "data": {"patch": 16, "batch": 2, "val_images": 1, "val_crop": 32},
            "space": {"name": "slimmable", "depth": 3, "channels": 16},
            "stages": [{"strategy": "sandwich", "steps": 1, "val_size": 16}]}


def _format_1_run(tmp_path):
    """A run whose final.pt is in format 1: the gate and each candidate extracted, with its context.pt."""
    run_dir = create_run(parse_recipe(TINY_DDS), tmp_path / "run")
    space = SPACES.get("slimmable")(depth=3, channels=16)
    supernet = _trained_like(Supernet(space))
    archs = [space.smallest(), space.largest()]
    gate = ClassifierGate(1, 2, channels=8)
    old = {f"gate.{k}": v for k, v in gate.state_dict().items()}
    for index, arch in enumerate(archs):
        old.update({f"candidates.{index}.{k}": v for k, v in extract(supernet, arch).state_dict().items()})
    spec = {"kind": "dynamic", "archs": archs, "flops": [1.0, 2.0], "cost_bias": 0.0,
            "gate": {"kind": "classifier", "classes": 2, "channels": 8, "stride": 2}}
    save_torch({"spec": spec, "state_dict": old}, run_dir / "final.pt")
    save_torch({"supernet": supernet.state_dict()}, run_dir / "context.pt")
    return run_dir, supernet, archs


def test_a_format_1_dynamic_network_is_converted_to_shared_weights(tmp_path) -> None:
    run_dir, supernet, archs = _format_1_run(tmp_path)
    loaded = final.load(run_dir)
    spec, model = loaded.spec, loaded.network
    assert spec["gate"] == {"kind": "classifier", "candidates": 2, "channels": 8, "stride": 2}
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        for view, arch in zip(model.candidates, archs):
            torch.testing.assert_close(view(x), extract(supernet, arch).eval()(x), atol=1e-5, rtol=0)


def test_a_format_1_network_that_the_supernet_does_not_reproduce_is_refused(tmp_path) -> None:
    run_dir, supernet, _ = _format_1_run(tmp_path)
    with torch.no_grad():
        for tensor in supernet.parameters():
            tensor.add_(1.0)
    save_torch({"supernet": supernet.state_dict()}, run_dir / "context.pt")
    with pytest.raises(RunError, match="they differ from the run's supernet; run the recipe again"):
        final.load(run_dir)
    (run_dir / "context.pt").unlink()
    with pytest.raises(RunError, match="no context.pt to convert it from"):
        final.load(run_dir)


@pytest.mark.parametrize("width", ["smallest", "largest"])
def test_the_dds_gate_hands_its_first_block_to_the_candidates(width: str) -> None:
    space = SPACES.get("slimmable")(depth=4, channels=16)
    supernet = _trained_like(Supernet(space))
    archs = [space.smallest(), space.sample(1), space.largest()]
    model = DynamicDenoiser(build_gate(supernet, "dds", 3, width=width), supernet, archs, [1.0, 2.0, 3.0]).eval()
    assert model.shared_block is not None and model.shared_block.width == (8 if width == "smallest" else 16)
    x = torch.rand(6, 1, 16, 16)
    with torch.no_grad():
        choice = torch.tensor([0, 1, 2, 0, 1, 2])  # every candidate, taking the gate's block over
        reused = model.run(x, choice, model.gate.stem(x))
        separate = torch.cat([model.candidates[int(c)](x[i: i + 1]) for i, c in enumerate(choice)])
        torch.testing.assert_close(reused, separate, atol=1e-5, rtol=0)
        out, chosen = model.route_and_run(x)
        assert chosen.tolist() == model.route(x).tolist()  # the same choices as the gate run on its own
        torch.testing.assert_close(out, torch.cat([model.candidates[int(c)](x[i: i + 1])
                                                   for i, c in enumerate(chosen)]), atol=1e-5, rtol=0)


def test_a_gate_without_the_first_block_runs_its_own() -> None:
    space = SPACES.get("slimmable")(depth=3, channels=16)
    model = DynamicDenoiser(ClassifierGate(1, 2, channels=8), Supernet(space), [space.smallest(), space.largest()],
                            [1.0, 2.0])
    assert model.shared_block is None


def test_a_dynamic_network_exports_to_one_onnx_graph_with_its_weights_once(tmp_path) -> None:
    onnx = pytest.importorskip("onnx", reason="the optional 'onnx' extra is not installed")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (in the 'onnx' extra) is not installed")
    from onnx import numpy_helper

    from nasden.deploy.export import export
    space = SPACES.get("slimmable")(depth=4, channels=16)
    supernet = _trained_like(Supernet(space))
    archs = [space.smallest(), space.sample(3), space.largest()]
    model = DynamicDenoiser(BrightnessGate(3), supernet, archs, [1.0, 2.0, 3.0]).eval()
    manifest = export(model, space, dynamic_spec(model), tmp_path / "out", "onnx")
    assert manifest["file"] == "denoiser.onnx" and manifest["routing"].startswith("in the graph")
    x = torch.rand(6, 1, 24, 40) * 0.1 + torch.linspace(0, 0.9, 6).view(6, 1, 1, 1)
    with torch.no_grad():
        assert len(set(model.route(x).tolist())) == 3  # the batch mixes every candidate
        expected = model(x)
    (y,) = ort.InferenceSession(str(tmp_path / "out" / "denoiser.onnx")).run(None, {"noisy": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(y), expected, atol=1e-5, rtol=0)
    graph = onnx.load(str(tmp_path / "out" / "denoiser.onnx")).graph
    stored = sum(numpy_helper.to_array(t).nbytes for t in graph.initializer)
    weights = sum(t.numel() * t.element_size() for t in [*supernet.parameters(), *supernet.buffers()])
    assert stored <= weights + 1024  # one weight set (and the routing's prices), not one per candidate
