"""Bad CLI flags and crafted run folders against one tiny trained run: every case is answered within 2 s with
exit code 2 and one line, writes nothing, and leaves every existing file as it was."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nasden.cli import main
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute

TINY = {
    "name": "tiny", "seed": 5, "device": "cpu",
    "data": {"patch": 16, "batch": 4, "val_images": 2, "val_crop": 48, "noise": {"sigma": 25}},
    "space": {"name": "dncnn", "depth": 3, "channels": 8},
    "stages": [{"strategy": "train", "steps": 10, "checkpoint_every": 10, "val_every": 10}],
}
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))

# (command template, crafted run folder or None); {run} {img} {dir} {out} {tmp} are filled in
FLAG_CASES = [
    "denoise {run} {img} {img}", "denoise {run} {dir} {dir}", "denoise {run} {img} {dir}/a.png",
    "denoise {run} {img} {tmp}/o.png --tile -1", "denoise {run} {img} {tmp}/o.png --tile 5",
    "denoise {run} {img} {tmp}/o.png --overlap -4", "denoise {run} {img} {tmp}/o.png --tile 40 --overlap 30",
    "denoise {run} {img} {tmp}/o.png --cost-bias nan", "denoise {run} {img} {tmp}/o.png --cost-bias=-inf",
    "denoise {run} {img} {tmp}/o.png --route-map {tmp}/m.png", "denoise {run} {tmp}/missing.png {tmp}/o.png",
    "denoise {run} {tmp}/empty {tmp}/outs", "denoise {run} {dir} {img}", "denoise {run} {img} {img}/sub/o.png",
    "denoise {tmp} {img} {tmp}/o.png", "denoise {tmp}/nope {img} {tmp}/o.png",
    "eval {run} --data builtin --sigma nan", "eval {run} --data builtin --sigma inf",
    "eval {run} --data builtin --sigma -1", "eval {run} --data builtin --sigma 1000",
    "eval {run} --data builtin --crop 0", "eval {run} --data builtin --crop -5", "eval {run} --data {img}",
    "eval {run} --data {tmp}/missing", "eval {run} --data {tmp}/empty", "eval {run} --data {tmp}/small",
    "eval {tmp} --data builtin", "export {tmp} --out {tmp}/export", "export {tmp}/nope --out {tmp}/export",
    "resume {tmp}", "resume {run} -o space.channels=4", "resume {run} -o stages.0.lr=-1",
    "resume {run} -o stages.9.lr=1e-3", "resume {run} -o data.batch=2", "validate {tmp}/laughs.yaml",
    "validate {tmp}/deep.yaml", "search {tmp}/laughs.yaml --out {tmp}/new", "search {tmp}/order.yaml --out {tmp}/new",
    "search {tmp}/order.yaml --out {img}", "search {tmp}/order.yaml --out {dir}", "worker {run} --stage 7",
    "search {tmp}/order.yaml --workers 0",
]
USING = {"eval": "eval {copy} --data builtin", "denoise": "denoise {copy} {img} {tmp}/o.png",
         "export": "export {copy} --out {tmp}/export", "resume": "resume {copy}"}
CRAFTED = {  # file in a copy of the run → contents, and the commands that read that file
    "final.pt": ([b"", b"PK\x03\x04", b"\x80\x04\x95\x00garbage", b"cos\nsystem\n(S'echo hi'\ntR."],
                 ["eval", "denoise", "export"]),
    "recipe.yaml": ([LAUGHS + "name: *i\n", "[" * 3000 + "]" * 3000, "space: {name: toy}\nstages: 5\n", "\x00\x01"],
                    ["resume"]),  # eval, denoise and export read the model file alone
    "context.pt": ([b"", b"\x80\x04junk"], ["resume"]),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fuzz")
    run = execute(create_run(parse_recipe(TINY), tmp / "run"), quiet=True) and tmp / "run"
    folder = tmp / "dir"
    folder.mkdir()
    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48), dtype=np.uint8)).save(folder / name)
    (tmp / "empty").mkdir()
    (tmp / "small").mkdir()
    Image.fromarray(np.zeros((6, 7), dtype=np.uint8)).save(tmp / "small" / "s.png")
    (tmp / "laughs.yaml").write_text(LAUGHS + "space: {name: toy}\nstages: [{strategy: train, arch: *i}]\n")
    (tmp / "deep.yaml").write_text("name: " + "{a: " * 4000 + "1" + "}" * 4000 + "\n")
    (tmp / "order.yaml").write_text("space: {name: slimmable, depth: 3, channels: 16}\nstages: [{strategy: gate}]\n")
    return {"run": run, "img": folder / "a.png", "dir": folder, "tmp": tmp}


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "tensorboard" not in p.parts}


def answered_in_one_line(argv: list[str], capsys, before: dict[str, bytes], root: Path) -> None:
    started = time.process_time()  # CPU time, not wall-clock: the same on a loaded machine
    code = main(argv)
    elapsed = time.process_time() - started
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}: {err}"  # not 0 (a wrong output), not 1 (an internal error)
    assert err.startswith("nasden: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert elapsed < 15, f"{elapsed:.1f} CPU s: was work started?"
    assert snapshot(root) == before  # nothing written, nothing lost


@pytest.mark.parametrize("template", FLAG_CASES)
def test_bad_flag(template: str, world, capsys) -> None:
    argv = template.format(**{k: str(v) for k, v in world.items()}).split()
    answered_in_one_line(argv, capsys, snapshot(world["tmp"]), world["tmp"])


@pytest.mark.parametrize(("name", "content", "command"),
                         [(n, c, USING[u]) for n, (cs, users) in CRAFTED.items() for c in cs for u in users])
def test_crafted_run_folder(name: str, content: str | bytes, command: str, world, tmp_path, capsys) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(world["run"], copy, ignore=shutil.ignore_patterns("tensorboard"))
    target = copy / name
    target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    argv = command.format(copy=copy, img=world["img"], tmp=tmp_path).split()
    answered_in_one_line(argv, capsys, snapshot(tmp_path), tmp_path)
