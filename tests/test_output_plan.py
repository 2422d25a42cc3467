from __future__ import annotations

from pathlib import Path

import pytest

from nasden.common.errors import WriteError
from nasden.data.images import ImageError
from nasden.deploy.output_plan import plan_outputs


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"original")


def test_a_folder_into_itself_is_refused_before_anything_is_written(tmp_path) -> None:
    coll = tmp_path / "coll"
    touch(coll / "a.jpg", coll / "a.png")
    with pytest.raises(ImageError, match="would overwrite the input"):
        plan_outputs(coll, coll)
    assert (coll / "a.png").read_bytes() == b"original"


def test_two_inputs_with_one_output_name_are_refused(tmp_path) -> None:
    touch(tmp_path / "coll" / "a.jpg", tmp_path / "coll" / "a.png")
    with pytest.raises(ImageError, match=r"a\.jpg and .*a\.png would both be written to .*out/a\.png"):
        plan_outputs(tmp_path / "coll", tmp_path / "out")


def test_existing_outputs_need_overwrite(tmp_path) -> None:
    touch(tmp_path / "coll" / "a.jpg", tmp_path / "coll" / "b.jpg", tmp_path / "out" / "a.png",
          tmp_path / "out" / "b.png")
    with pytest.raises(ImageError, match=r"a\.png: exists \(and 1 more\); pass --overwrite"):
        plan_outputs(tmp_path / "coll", tmp_path / "out")
    jobs = plan_outputs(tmp_path / "coll", tmp_path / "out", overwrite=True)
    assert [j.output.name for j in jobs] == ["a.png", "b.png"]


def test_single_file_targets_and_route_maps(tmp_path) -> None:
    touch(tmp_path / "x.jpg")
    assert plan_outputs(tmp_path / "x.jpg", tmp_path / "y.png")[0].output == tmp_path / "y.png"
    assert plan_outputs(tmp_path / "x.jpg", tmp_path / "outdir")[0].output == tmp_path / "outdir" / "x.png"
    with pytest.raises(ImageError, match="both be written"):
        plan_outputs(tmp_path / "x.jpg", tmp_path / "y.png", route_map=tmp_path / "y.png")
    with pytest.raises(ImageError, match="would overwrite the input"):
        plan_outputs(tmp_path / "x.jpg", tmp_path / "z.png", route_map=tmp_path / "x.jpg")


def test_outputs_that_cannot_be_created_are_named(tmp_path) -> None:
    touch(tmp_path / "coll" / "a.png", tmp_path / "file")
    with pytest.raises(ImageError, match="is a file; the output of a folder"):
        plan_outputs(tmp_path / "coll", tmp_path / "file")
    with pytest.raises(WriteError, match="cannot be created, .*file is a file"):
        plan_outputs(tmp_path / "coll" / "a.png", tmp_path / "file" / "sub" / "b.png")
    with pytest.raises(ImageError, match="no such file or folder"):
        plan_outputs(tmp_path / "missing.png", tmp_path / "b.png")
