"""What a run would refuse at its start, ``validate`` refuses too, with the same line, and ``search`` refuses
before it makes a run folder; every size a recipe, flag or image sets is checked before it is allocated."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from nasden.cli import main
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute

TINY = {
    "name": "tiny", "seed": 5, "device": "cpu",
    "data": {"patch": 16, "batch": 4, "val_images": 2, "val_crop": 48, "noise": {"sigma": 25}},
    "space": {"name": "dncnn", "depth": 3, "channels": 8},
    "stages": [{"strategy": "train", "steps": 4, "val_every": 4}],
}
DARTS = {**TINY, "space": {"name": "mod_unet", "stages": 1, "levels": 2, "channels": 8, "layers": 2},
         "stages": [{"strategy": "darts", "steps": 4, "warmup": 1, "val_size": 32}]}
GATE = {**TINY, "space": {"name": "slimmable", "depth": 3, "channels": 16},
        "stages": [{"strategy": "sandwich", "steps": 2, "val_size": 32},
                   {"strategy": "progressive_slimming", "val_size": 32}, {"strategy": "gate", "steps": 2}]}


def _with(recipe: dict, **paths: object) -> dict:
    recipe = yaml.safe_load(yaml.safe_dump(recipe))
    for path, value in paths.items():
        node = recipe
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return recipe


def folder_of(tmp: Path, name: str, sizes: list[tuple[int, int]]) -> str:
    folder = tmp / name
    folder.mkdir()
    for index, size in enumerate(sizes):
        Image.fromarray(np.zeros(size, dtype=np.uint8)).save(folder / f"{index}.png")
    return str(folder)


BAD = {  # name → (recipe maker, the words of the refusal)
    "empty training folder": (lambda t: _with(TINY, data__train=folder_of(t, "empty", [])), "no image files"),
    "validation crop larger than the images": (lambda t: _with(DARTS, stages__0__val_size=4096),
                                               "smaller than the 4096-pixel evaluation crop"),
    "patch larger than every training image": (lambda t: _with(TINY, data__train=folder_of(t, "small", [(10, 10)])),
                                               "no training image is at least 16×16"),
    "gate patch larger than the images": (lambda t: _with(GATE, data__train=folder_of(t, "img", [(40, 40)] * 2),
                                                          stages__2__patch=64), "patch 64: larger than"),
    "darts on one training image": (lambda t: _with(DARTS, data__train=folder_of(t, "one", [(64, 64)])),
                                    "at least two images"),
    "data.batch": (lambda t: _with(TINY, data__batch=65536, data__patch=48), "needs ~"),
    "data.patch": (lambda t: _with(TINY, data__patch=4096, data__batch=16), "needs ~"),
    "data.val_crop": (lambda t: _with(TINY, data__val_crop=65536), "needs ~"),
    "stage batch": (lambda t: _with(DARTS, stages__0__batch=65536), "needs ~"),
    "gate batch": (lambda t: _with(GATE, stages__2__batch=65536, stages__2__patch=4096), "needs ~"),
    "space channels": (lambda t: _with(TINY, space={"name": "dncnn", "depth": 200, "channels": 16384}), "needs ~"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_validate_and_search_refuse_alike_before_anything_is_made(name, tmp_path, capsys) -> None:
    make, words = BAD[name]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(make(tmp_path)))
    verdicts = []
    for argv in (["validate", str(path)], ["search", str(path), "--out", str(tmp_path / "run"), "--quiet"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and words in err and err.count("\n") == 1 and "Traceback" not in err, err
        verdicts.append(err.split(": ", 2)[-1])
    assert verdicts[0] == verdicts[1]
    assert not (tmp_path / "run").exists()


def _measured(argv: list[str], cwd: Path) -> tuple[int, str, float, float]:
    """Run the CLI in a fresh process: exit code, stderr, CPU seconds inside ``main`` and peak RSS in GB (VmHWM:
    ``ru_maxrss`` would keep the forking parent's size across the exec)."""
    script = ("import sys, time\nfrom nasden.cli import main\nstart = time.process_time()\n"
              f"code = main({argv!r})\nseconds = time.process_time() - start\n"
              "peak = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024 ** 2\n"
              "print(f'MEASURED {seconds} {peak}', file=sys.stderr)\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=120)
    measured = [line for line in done.stderr.splitlines() if line.startswith("MEASURED")][0].split()
    err = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("MEASURED"))
    return done.returncode, err, float(measured[1]), float(measured[2])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("knobs") / "run"
    execute(create_run(parse_recipe(_with(TINY, stages__0__steps=20, stages__0__val_every=20)), folder),
            quiet=True)
    return folder


@pytest.fixture(scope="module")
def huge(tmp_path_factory) -> Path:
    """A 30000×20000 PNG that compresses to nothing: only its header is ever read."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("L", (30000, 20000)).save(path)
    return path


KNOBS = {  # an absurd value of each size a recipe or flag sets → the command
    "data.batch": ["validate", "{recipe}", "-o", "data.batch=65536", "-o", "data.patch=48"],
    "data.patch": ["validate", "{recipe}", "-o", "data.patch=4096", "-o", "data.batch=16"],
    "data.val_crop": ["validate", "{recipe}", "-o", "data.val_crop=65536"],
    "stage batch": ["validate", "{recipe}", "-o", "stages.0.batch=65536", "-o", "data.patch=48"],
    "space channels": ["validate", "{recipe}", "-o", "space.channels=16384", "-o", "space.depth=100"],
    "denoise --tile on a huge image": ["denoise", "{run}", "{huge}", "{tmp}/out.png", "--tile", "0"],
}


@pytest.mark.slow
@pytest.mark.parametrize("knob", list(KNOBS))
def test_an_absurd_size_is_one_line_fast_and_small(knob, trained, huge, tmp_path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    argv = [a.format(recipe=recipe, run=trained, huge=huge, tmp=tmp_path) for a in KNOBS[knob]]
    code, err, seconds, peak_gb = _measured(argv, tmp_path)
    assert code == 2 and err.count("\n") == 0 and ("needs ~" in err or "decompression bomb" in err), err
    assert seconds < 2 and peak_gb < 1, (seconds, peak_gb)
