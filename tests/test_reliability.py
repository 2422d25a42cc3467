"""Hostile and careless use: no data loss, no hang, no silent wrong output, one line per bad input."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from nasden.cli import main
from nasden.common.atomic import TEMP_PREFIX
from nasden.common.errors import RunError, StageFailed
from nasden.common.storage import load_torch
from nasden.pipeline.recipe import load_recipe, parse_recipe
from nasden.pipeline.run import RunLock, create_run, execute

TINY = {
    "name": "tiny", "seed": 5, "device": "cpu",
    "data": {"patch": 16, "batch": 4, "val_images": 2, "val_crop": 48, "noise": {"sigma": 25}},
    "space": {"name": "dncnn", "depth": 3, "channels": 8},
    "stages": [{"strategy": "train", "steps": 20, "checkpoint_every": 10, "val_every": 20}],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliability") / "run"
    execute(create_run(parse_recipe(TINY), folder), quiet=True)
    return folder


def noisy_image(path, seed=0, size=(40, 50)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, size, dtype=np.uint8)).save(path)


def one_line_error(capsys, code: int, expected: str) -> None:
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err


def test_a_folder_denoised_into_itself_loses_nothing(run, tmp_path, capsys) -> None:
    coll = tmp_path / "coll"
    noisy_image(coll / "a.png")
    Image.open(coll / "a.png").save(coll / "a.jpg")
    before = {p.name: p.read_bytes() for p in coll.iterdir()}
    one_line_error(capsys, main(["denoise", str(run), str(coll), str(coll)]), "would overwrite the input")
    assert {p.name: p.read_bytes() for p in coll.iterdir()} == before
    one_line_error(capsys, main(["denoise", str(run), str(coll), str(tmp_path / "out")]), "would both be written")
    assert not (tmp_path / "out").exists()


def test_existing_outputs_are_replaced_only_with_overwrite(run, tmp_path, capsys) -> None:
    noisy_image(tmp_path / "in.png")
    (tmp_path / "out.png").write_bytes(b"keep me")
    one_line_error(capsys, main(["denoise", str(run), str(tmp_path / "in.png"), str(tmp_path / "out.png")]),
                   "exists; pass --overwrite")
    assert (tmp_path / "out.png").read_bytes() == b"keep me"
    assert main(["denoise", str(run), str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--overwrite"]) == 0
    assert "(replaced)" in capsys.readouterr().out
    assert Image.open(tmp_path / "out.png").size == (50, 40)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--overlap", "-8"], "expected sizes ≥ 0"), (["--tile", "-64"], "expected sizes ≥ 0"),
    (["--tile", "8"], "at least 64 pixels (twice --overlap 32)"),
    (["--tile", "40", "--overlap", "24"], "at least 48 pixels"),
    (["--cost-bias", "nan"], "expected a finite number"), (["--cost-bias", "inf"], "expected a finite number"),
])
def test_denoise_flags_that_would_give_wrong_output_are_refused(run, tmp_path, capsys, flags, expected) -> None:
    noisy_image(tmp_path / "in.png")
    one_line_error(capsys, main(["denoise", str(run), str(tmp_path / "in.png"), str(tmp_path / "o.png"), *flags]),
                   expected)
    assert not (tmp_path / "o.png").exists()


def test_a_folder_where_every_image_is_skipped_fails(run, tmp_path, capsys) -> None:
    (tmp_path / "bad").mkdir()
    for name in ("x.png", "y.jpg"):
        (tmp_path / "bad" / name).write_bytes(b"not an image")
    one_line_error(capsys, main(["denoise", str(run), str(tmp_path / "bad"), str(tmp_path / "out")]),
                   "every image was skipped")


@pytest.mark.parametrize(("flags", "expected"), [
    (["--sigma", "nan"], "expected a noise level"), (["--sigma", "-1"], "expected a noise level"),
    (["--crop", "0"], "SSIM window"),
])
def test_eval_flags_are_checked(run, capsys, flags, expected) -> None:
    one_line_error(capsys, main(["eval", str(run), "--data", "builtin", *flags]), expected)


def test_eval_of_images_smaller_than_the_ssim_window(run, tmp_path, capsys) -> None:
    noisy_image(tmp_path / "tiny" / "a.png", size=(8, 9))
    one_line_error(capsys, main(["eval", str(run), "--data", str(tmp_path / "tiny")]), "smaller than the 11-pixel")


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"\x80\x04\x95garbage"])
def test_truncated_or_hostile_checkpoints_get_one_line(run, tmp_path, capsys, content) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "recipe.yaml").write_text((run / "recipe.yaml").read_text())
    (copy / "final.pt").write_bytes(content)
    code = main(["eval", str(copy), "--data", "builtin"])
    err = capsys.readouterr().err
    assert code == 2 and "not a checkpoint nasden can read safely" in err and "weights_only" not in err, err
    with pytest.raises(RunError):
        load_torch(copy / "final.pt")


def test_search_out_must_be_new_or_empty(tmp_path, capsys) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    (tmp_path / "file").write_text("x")
    one_line_error(capsys, main(["search", str(recipe), "--out", str(tmp_path / "file")]), "is not a folder")
    (tmp_path / "left" / "stages").mkdir(parents=True)
    one_line_error(capsys, main(["search", str(recipe), "--out", str(tmp_path / "left")]), "not empty")


def test_a_diverged_network_is_not_kept_as_final(tmp_path) -> None:
    data = {**TINY, "space": {"name": "dncnn", "depth": 3, "channels": 8, "bn": False},
            "stages": [{"strategy": "train", "steps": 20, "lr": 5.0, "lr_min": 5.0, "val_every": 20}]}
    run_dir = create_run(parse_recipe(data), tmp_path / "run")
    with pytest.raises(StageFailed, match="worse than their noisy input") as failed:
        execute(run_dir, quiet=True)
    assert not (run_dir / "final.pt").exists()
    assert "last" not in str(failed.value) and "moved aside" in str(failed.value)  # no bad checkpoint called good
    stage = run_dir / "stages" / "00-train"
    assert (stage / "checkpoint.diverged.pt").exists() and not (stage / "checkpoint.pt").exists()


def test_resume_takes_recovery_overrides_and_records_them(tmp_path, capsys) -> None:
    run_dir = create_run(parse_recipe(TINY), tmp_path / "run")
    one_line_error(capsys, main(["resume", str(run_dir), "-o", "space.channels=4"]), "only stages.N.lr")
    assert main(["resume", str(run_dir), "--quiet", "-o", "stages.0.lr=5e-4", "-o", "stages.0.steps=12"]) == 0
    assert "-o stages.0.lr=5e-4" in (run_dir / "recipe.yaml").read_text()
    recipe = load_recipe(run_dir / "recipe.yaml")
    assert recipe.stages[0].options.lr == 5e-4 and recipe.stages[0].options.steps == 12


def test_resume_can_change_a_training_compute(tmp_path) -> None:
    data = {**TINY, "stages": [{"strategy": "train", "compute": 1e8, "val_every": 1000}]}
    run_dir = create_run(parse_recipe(data), tmp_path / "run")
    assert main(["resume", str(run_dir), "--quiet", "-o", "stages.0.compute=2e8"]) == 0
    assert load_recipe(run_dir / "recipe.yaml").stages[0].options.compute == 2e8


def test_one_process_at_a_time_and_orphans_are_cleaned(tmp_path) -> None:
    run_dir = create_run(parse_recipe(TINY), tmp_path / "run")
    (run_dir / "run.lock").write_text("1")  # PID 1 is alive: another process holds the run
    with pytest.raises(RunError, match="in use by process 1"):
        execute(run_dir, quiet=True)
    (run_dir / "run.lock").write_text(str(2 ** 22 + 7))  # a dead owner's lock is taken over
    orphan = run_dir / "stages" / f"{TEMP_PREFIX}checkpoint.pt.abc123"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half")
    execute(run_dir, quiet=True)
    assert not orphan.exists() and not (run_dir / "run.lock").exists()
    with RunLock(run_dir), pytest.raises(RunError, match=f"in use by process {os.getpid()}"):
        with RunLock(run_dir):
            pass


def test_unexpected_errors_give_one_line_and_a_log(run, tmp_path, capsys, monkeypatch) -> None:
    import nasden.deploy.denoiser

    def broken(*args, **kwargs):
        raise ZeroDivisionError("something deep went wrong")

    monkeypatch.setattr(nasden.deploy.denoiser, "evaluate_network", broken)
    code = main(["eval", str(run), "--data", "builtin"])
    err = capsys.readouterr().err
    assert code == 1 and "internal error: ZeroDivisionError" in err and "Traceback" not in err
    assert "ZeroDivisionError" in (run / "error.log").read_text()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_output_folder_gets_one_line(run, tmp_path, capsys) -> None:
    noisy_image(tmp_path / "in.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    one_line_error(capsys, main(["denoise", str(run), str(tmp_path / "in.png"), str(locked / "o.png")]),
                   "o.png: cannot write")


def test_a_failed_write_names_the_target_not_the_temporary_file(tmp_path) -> None:
    from nasden.common.atomic import atomic_write
    from nasden.common.errors import WriteError

    def disk_full(tmp: str) -> None:
        raise OSError(28, "No space left on device", tmp)

    with pytest.raises(WriteError, match=r"out\.png: cannot write \(No space left on device\)") as caught:
        atomic_write(tmp_path / "out.png", disk_full)
    assert TEMP_PREFIX not in str(caught.value) and not list(tmp_path.iterdir())


def test_resume_writes_a_damaged_final_network_again(run, tmp_path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("tensorboard"))
    whole = (copy / "final.pt").read_bytes()
    (copy / "final.pt").write_bytes(whole[: len(whole) // 2])
    (copy / "stages" / "00-train" / "result.json").write_text("{trunc")
    assert main(["resume", str(copy), "--quiet"]) == 0
    assert "final.pt" in capsys.readouterr().err  # said, not silent
    assert (copy / "final.pt").read_bytes() != whole[: len(whole) // 2]
    assert json.loads((copy / "stages" / "00-train" / "result.json").read_text())["steps"] == 20
    noisy_image(tmp_path / "in.png")
    assert main(["denoise", str(copy), str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--quiet"]) == 0


def test_a_relative_data_folder_is_the_same_folder_on_resume(tmp_path, monkeypatch, capsys) -> None:
    for index in range(3):
        noisy_image(tmp_path / "work" / "img64" / f"{index}.png", seed=index, size=(64, 64))
    (tmp_path / "elsewhere" / "img64").mkdir(parents=True)  # same name, other images
    noisy_image(tmp_path / "elsewhere" / "img64" / "other.png", size=(64, 64))
    monkeypatch.chdir(tmp_path / "work")
    data = {**TINY, "data": {**TINY["data"], "train": "img64", "val": "img64"},
            "stages": [{"strategy": "train", "steps": 4, "checkpoint_every": 2, "val_every": 4}]}
    run_dir = create_run(parse_recipe(data), tmp_path / "run")
    recipe = load_recipe(run_dir / "recipe.yaml")
    assert recipe.data.train == str(tmp_path / "work" / "img64")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["resume", str(run_dir), "--quiet"]) == 0  # reads work/img64, not ./img64
    noisy_image(tmp_path / "work" / "img64" / "3.png", seed=3, size=(64, 64))  # the folder changes
    one_line_error(capsys, main(["resume", str(run_dir), "--quiet"]), "holds other images than when the run")


def test_a_16_bit_png_stays_16_bit(run, tmp_path, capsys) -> None:
    pixels = np.random.default_rng(0).integers(0, 65535, (40, 48), dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "in16.png")
    assert main(["denoise", str(run), str(tmp_path / "in16.png"), str(tmp_path / "out.png"), "--quiet"]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.dtype == np.uint16 and np.any(out % 257 != 0)
    assert main(["denoise", str(run), str(tmp_path / "in16.png"), str(tmp_path / "out.jpg"), "--quiet"]) == 0
    assert "16-bit input written as 8-bit" in capsys.readouterr().out
