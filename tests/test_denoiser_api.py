"""The model file on its own and the Python API: ``nasden.load(path).denoise(image)``, ``denoise_file``,
``describe``; the CLI through the same API; old model files."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nasden
from nasden.cli import main
from nasden.common.errors import RunError, UsageError
from nasden.common.storage import load_torch, save_torch
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.gates import build_gate
from nasden.core.specs import build_space, dynamic_spec
from nasden.core.supernet import Supernet
from nasden.data.noise import NoiseConfig
from nasden.deploy import model_file
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute

TINY = {
    "name": "tiny", "seed": 5, "device": "cpu",
    "data": {"patch": 16, "batch": 4, "val_images": 2, "val_crop": 48, "noise": {"sigma": 25}},
    "space": {"name": "dncnn", "depth": 3, "channels": 8},
    "stages": [{"strategy": "train", "steps": 20, "val_every": 20}],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("api") / "run"
    execute(create_run(parse_recipe(TINY), folder), quiet=True)
    return folder


@pytest.fixture
def alone(run, tmp_path, monkeypatch) -> Path:
    """``final.pt`` copied alone into an empty folder, the working folder; HOME, the data and cache empty."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copy(run / "final.pt", folder / "model.pt")
    monkeypatch.chdir(folder)
    for name in ("HOME", "NASDEN_DATA", "NASDEN_CACHE"):
        monkeypatch.setenv(name, str(tmp_path / "empty"))
    return folder / "model.pt"


def photo(path: Path, size: tuple[int, int] = (40, 52)) -> np.ndarray:
    array = np.random.default_rng(1).integers(0, 255, size, dtype=np.uint8)
    Image.fromarray(array).save(path)
    return array


def test_the_model_file_alone_denoises_from_the_cli_and_from_python(alone, capsys) -> None:
    noisy = photo(alone.parent / "photo.png")
    assert main(["denoise", "model.pt", "photo.png", "out.png", "--quiet"]) == 0
    model = nasden.load("model.pt")
    assert isinstance(model, nasden.Denoiser) and isinstance(model, torch.nn.Module) and not model.training
    denoised = model.denoise(noisy)
    assert denoised.dtype == np.uint8 and denoised.shape == noisy.shape
    np.testing.assert_array_equal(denoised, np.asarray(Image.open(alone.parent / "out.png")))
    assert np.abs(denoised.astype(int) - noisy).mean() > 1  # it did something
    nasden.denoise_file(model, "photo.png", "api.png")
    np.testing.assert_array_equal(np.asarray(Image.open("api.png")), denoised)
    with pytest.raises(Exception, match="exists; pass --overwrite"):
        nasden.denoise_file("model.pt", "photo.png", "api.png")


def test_eval_and_export_take_a_model_file(alone, capsys) -> None:
    assert main(["eval", "model.pt", "--data", "builtin", "--crop", "32"]) == 0
    assert "psnr" in capsys.readouterr().out.lower()
    assert main(["export", "model.pt", "--out", "exported"]) == 0
    assert (alone.parent / "exported" / "denoiser.pt").is_file()


def test_a_run_folder_without_its_recipe_still_loads(run, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("recipe.yaml", "tensorboard"))
    assert nasden.load(copy).describe()["kind"] == "static"


@pytest.mark.parametrize("kind", ["uint8", "uint16", "float", "rgb_uint8", "pil_L", "pil_I16", "pil_RGB",
                                  "tensor_hw", "tensor_chw", "tensor_rgb"])
def test_denoise_returns_the_image_as_it_came(run, kind) -> None:
    model = nasden.load(run)
    rng = np.random.default_rng(0)
    gray = rng.random((36, 44))
    image = {
        "uint8": (gray * 255).astype(np.uint8), "uint16": (gray * 65535).astype(np.uint16),
        "float": gray.astype(np.float32), "rgb_uint8": (rng.random((36, 44, 3)) * 255).astype(np.uint8),
        "pil_L": Image.fromarray((gray * 255).astype(np.uint8)),
        "pil_I16": Image.fromarray((gray * 65535).astype(np.uint16)),
        "pil_RGB": Image.fromarray((rng.random((36, 44, 3)) * 255).astype(np.uint8)),
        "tensor_hw": torch.from_numpy(gray).float(), "tensor_chw": torch.from_numpy(gray).float()[None],
        "tensor_rgb": torch.rand(3, 36, 44),
    }[kind]
    out = model.denoise(image)
    assert type(out) is type(image)
    if isinstance(image, Image.Image):
        assert (out.mode, out.size) == (image.mode, image.size)
        out, image = np.asarray(out), np.asarray(image)
    assert out.shape == image.shape and out.dtype == image.dtype
    if kind == "uint16":  # 16 bits stay 16 bits: the output uses values an 8-bit image cannot hold
        assert np.any(out % 257 != 0)
    reference = model.run(torch.from_numpy(gray).float()[None], tile=0).image[0].clamp(0, 1).numpy()
    if kind in ("uint8", "uint16", "float", "pil_L", "pil_I16", "tensor_hw", "tensor_chw"):
        scale = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}.get(np.asarray(out).dtype, 1)
        got = np.asarray(out, dtype=np.float64).reshape(reference.shape) / scale
        assert np.abs(got - reference).max() < 2.5 / 255  # the input's own quantisation, no more


@pytest.mark.parametrize("bad", [np.zeros((4, 5, 2)), np.zeros((3, 4), dtype=np.int64), [[0.5]],
                                 Image.new("CMYK", (8, 8)), torch.zeros(1, 1, 8, 8)])
def test_a_bad_image_gets_one_clear_error(run, bad) -> None:
    with pytest.raises(UsageError, match="expected"):
        nasden.load(run).denoise(bad)


def test_describe_and_the_training_noise(run) -> None:
    model = nasden.load(run)
    described = model.describe()
    assert described["flops_per_pixel"] > 0 and described["params"] == sum(p.numel() for p in model.parameters())
    assert described["in_channels"] == 1 and described["trained_on"]["noise"]["sigma"] == 25
    assert model.noise_warning(25) is None
    assert "trained on AWGN sigma 25" in model.noise_warning(50)


def test_a_dynamic_model_file_routes_alone(tmp_path) -> None:
    space_spec = {"name": "slimmable", "depth": 4, "channels": 16}
    space = build_space(space_spec)
    supernet = Supernet(space)
    archs = [space.smallest(), space.largest()]
    network = DynamicDenoiser(build_gate(supernet, "dds", 2), supernet, archs, [1.0, 2.0]).eval()
    trained_on = {"train": "builtin", "noise": dataclasses.asdict(NoiseConfig()), "real_noise": False}
    model_file.save(network, dynamic_spec(network), tmp_path / "dynamic.pt", space_spec, trained_on)
    model = nasden.load(tmp_path / "dynamic.pt")
    assert model.dynamic and len(model.describe()["candidate_flops_per_pixel"]) == 2
    result = model.run(torch.rand(1, 64, 64), tile=32, overlap=0, route="tile")
    assert len(result.choices) == 4 and set(result.choices) <= {0, 1}
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), network(x))


def test_a_format_2_file_loads_from_its_run_folder_only(run, tmp_path) -> None:
    copy = tmp_path / "old"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tensorboard"))
    state = load_torch(copy / "final.pt")
    save_torch({"format": 2, "spec": state["spec"], "state_dict": state["state_dict"]}, copy / "final.pt")
    new = nasden.load(run)
    old = nasden.load(copy)
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        torch.testing.assert_close(old(x), new(x))
    assert old.trained_on["noise"]["sigma"] == 25
    shutil.copy(copy / "final.pt", tmp_path / "lonely.pt")
    with pytest.raises(RunError, match="needs the recipe.yaml of its run folder"):
        nasden.load(tmp_path / "lonely.pt")


def test_a_newer_or_foreign_file_is_refused(run, tmp_path) -> None:
    state = load_torch(run / "final.pt")
    save_torch({**state, "format": 99}, tmp_path / "future.pt")
    with pytest.raises(RunError, match="newer than this nasden reads"):
        nasden.load(tmp_path / "future.pt")
    save_torch({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(RunError, match="not a model file written by nasden"):
        nasden.load(tmp_path / "foreign.pt")
    save_torch({**state, "state_dict": {}}, tmp_path / "emptied.pt")
    with pytest.raises(RunError, match="do not fit its network spec"):
        nasden.load(tmp_path / "emptied.pt")
    with pytest.raises(RunError, match="no such model file"):
        nasden.load(tmp_path / "missing.pt")
