"""No write nasden was not asked for: every command that writes refuses an existing file (unless
``--overwrite``), a folder, a FIFO and a device at its target, leaves it untouched, and says so in one line
before computing anything."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from nasden.cli import main
from nasden.common.atomic import atomic_write
from nasden.common.errors import WriteError
from nasden.data import datasets
from nasden.data.datasets import manifest_for
from nasden.data.images import save_image
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute

TINY = {
    "name": "tiny", "seed": 5, "device": "cpu",
    "data": {"patch": 16, "batch": 4, "val_images": 2, "val_crop": 48, "noise": {"sigma": 25}},
    "space": {"name": "dncnn", "depth": 3, "channels": 8},
    "stages": [{"strategy": "train", "steps": 20, "val_every": 20}],
}
KINDS = ["file", "folder", "fifo", "device"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("writes") / "run"
    execute(create_run(parse_recipe(TINY), folder), quiet=True)
    return folder


def make(kind: str, path: Path) -> None:
    """Put a ``kind`` thing at ``path``: a file or a folder holding the user's bytes, a FIFO, or a character
    device node like /dev/full (root only; skipped otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        path.write_bytes(b"the user's file")
    elif kind == "folder":
        path.mkdir()
        (path / "mine.txt").write_bytes(b"the user's file")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 7))
        except PermissionError:
            pytest.skip("making a device node needs root")


def state(path: Path) -> tuple:
    """What is at ``path``, down to its bytes: equal before and after means untouched."""
    info = path.lstat()
    content = path.read_bytes() if stat.S_ISREG(info.st_mode) else (
        sorted((p.name, p.read_bytes()) for p in path.iterdir()) if stat.S_ISDIR(info.st_mode) else None)
    return stat.S_IFMT(info.st_mode), info.st_rdev, info.st_ino, content


def refused_untouched(capsys, argv: list[str], target: Path, expected: str) -> None:
    before = state(target)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert state(target) == before


def expected_refusal(kind: str) -> str:
    return {"file": "pass --overwrite", "folder": "is a folder", "fifo": "is a FIFO",
            "device": "is a character device"}[kind]


def noisy_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_denoise(run, tmp_path, capsys, kind) -> None:
    image = noisy_png(tmp_path / "in.png")
    make(kind, tmp_path / "out" / "in.png")
    argv = ["denoise", str(run), str(image), str(tmp_path / "out"), "--quiet"]
    refused_untouched(capsys, argv, tmp_path / "out" / "in.png", expected_refusal(kind))
    if kind != "file":
        refused_untouched(capsys, [*argv, "--overwrite"], tmp_path / "out" / "in.png", expected_refusal(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_eval_json_is_checked_before_scoring(run, tmp_path, capsys, kind, monkeypatch) -> None:
    make(kind, tmp_path / "scores.json")
    monkeypatch.setattr("nasden.deploy.denoiser.evaluate_network",
                        lambda *a, **k: pytest.fail("scored before refusing"))
    argv = ["eval", str(run), "--data", "builtin", "--crop", "32", "--json", str(tmp_path / "scores.json")]
    refused_untouched(capsys, argv, tmp_path / "scores.json", expected_refusal(kind))
    if kind != "file":
        refused_untouched(capsys, [*argv, "--overwrite"], tmp_path / "scores.json", expected_refusal(kind))


def test_eval_json_replaces_a_file_with_overwrite(run, tmp_path, capsys) -> None:
    make("file", tmp_path / "scores.json")
    argv = ["eval", str(run), "--data", "builtin", "--crop", "32", "--json", str(tmp_path / "scores.json")]
    assert main([*argv, "--overwrite"]) == 0
    assert b"psnr" in (tmp_path / "scores.json").read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_export(run, tmp_path, capsys, kind) -> None:
    out = tmp_path / "exported"
    make(kind, out / "manifest.json")
    argv = ["export", str(run), "--out", str(out)]
    refused_untouched(capsys, argv, out / "manifest.json", expected_refusal(kind))
    assert not (out / "denoiser.pt").exists(), "a file was written before the plan was checked"
    if kind != "file":
        refused_untouched(capsys, [*argv, "--overwrite"], out / "manifest.json", expected_refusal(kind))


@pytest.mark.parametrize("kind", ["file", "fifo", "device"])
def test_export_out_must_be_a_folder(run, tmp_path, capsys, kind) -> None:
    make(kind, tmp_path / "out")
    refused_untouched(capsys, ["export", str(run), "--out", str(tmp_path / "out"), "--overwrite"], tmp_path / "out",
                      "is not a folder")


def test_export_replaces_its_own_files_only_with_overwrite(run, tmp_path, capsys) -> None:
    out = tmp_path / "exported"
    assert main(["export", str(run), "--out", str(out)]) == 0
    refused_untouched(capsys, ["export", str(run), "--out", str(out)], out / "denoiser.pt", "pass --overwrite")
    assert main(["export", str(run), "--out", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_search_out(tmp_path, capsys, kind) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    make(kind, tmp_path / "out")
    expected = "not empty" if kind == "folder" else "is not a folder"
    refused_untouched(capsys, ["search", str(recipe), "--out", str(tmp_path / "out")], tmp_path / "out", expected)


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch) -> Path:
    """A made-up named dataset ``tiny`` (two PNGs in ``source/``) and an empty cache."""
    source = tmp_path / "source"
    for index in range(2):
        save_image(torch.rand(1, 16, 16 + index), source / f"img{index}.png")
    data = manifest_for(source, "tiny", description="test", repository="example/tiny", commit="0" * 40,
                        path="images", licence="public domain", citation="none")
    monkeypatch.setattr(datasets, "manifest", lambda name: data)
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    return source


@pytest.mark.parametrize("kind", KINDS)
def test_data_get(tiny_dataset, tmp_path, capsys, kind) -> None:
    target = tmp_path / "cache" / "tiny"
    make(kind, target)
    expected = "is not a complete copy" if kind == "folder" else "is not a folder"
    argv = ["data", "get", "tiny", "--from", str(tiny_dataset)]
    refused_untouched(capsys, argv, target, expected)
    if kind == "folder":
        assert main([*argv, "--overwrite"]) == 0
        assert sorted(p.name for p in target.iterdir()) == ["img0.png", "img1.png"]
    else:
        refused_untouched(capsys, [*argv, "--overwrite"], target, expected)


def test_data_get_keeps_a_complete_copy(tiny_dataset, tmp_path, capsys) -> None:
    argv = ["data", "get", "tiny", "--from", str(tiny_dataset)]
    assert main(argv) == 0
    before = state(tmp_path / "cache" / "tiny")
    assert main(argv) == 0
    assert state(tmp_path / "cache" / "tiny") == before


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_atomic_write_never_replaces_anything_but_a_file(tmp_path, kind) -> None:
    make(kind, tmp_path / "target")
    before = state(tmp_path / "target")
    with pytest.raises(WriteError, match=expected_refusal(kind)):
        atomic_write(tmp_path / "target", lambda tmp: Path(tmp).write_text("new"))
    assert state(tmp_path / "target") == before


def test_a_symbolic_link_is_not_followed_or_replaced(run, tmp_path, capsys) -> None:
    (tmp_path / "elsewhere.json").write_text("the user's file")
    (tmp_path / "link.json").symlink_to(tmp_path / "elsewhere.json")
    argv = ["eval", str(run), "--data", "builtin", "--crop", "32", "--json", str(tmp_path / "link.json"), "--overwrite"]
    refused_untouched(capsys, argv, tmp_path / "link.json", "is a symbolic link")
    assert (tmp_path / "elsewhere.json").read_text() == "the user's file"
