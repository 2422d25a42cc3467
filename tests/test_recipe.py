from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from nasden.cli import main
from nasden.pipeline.recipe import RecipeError, apply_override, load_recipe, parse_recipe

GOOD = {
    "name": "tiny", "seed": 1,
    "data": {"train": "builtin", "noise": {"kind": "gaussian", "sigma": [0, 50]}, "patch": 16},
    "space": {"name": "dncnn", "depth": 3, "channels": 8},
    "stages": [{"strategy": "train", "steps": 10, "lr": "1e-3"}, {"strategy": "evaluate"}],
}


def write(tmp_path, data, name="r.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_good_recipe_fills_defaults_and_round_trips(tmp_path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    assert recipe.stages[0].options.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string; accepted as a number
    assert recipe.stages[1].options.sets == ["val"]
    assert recipe.data.noise.sigma == [0.0, 50.0]
    again = parse_recipe(yaml.safe_load(yaml.safe_dump(recipe.to_dict())))
    assert again.to_dict() == recipe.to_dict()


@pytest.mark.parametrize("change, message", [
    ({"stages": [{"strategy": "train", "stepz": 1}]},
     "stages.0: unknown key 'stepz'; allowed: steps, compute, lr"),
    ({"stages": [{"strategy": "train", "steps": "many"}]}, "stages.0.steps: 'many': expected an integer"),
    ({"stages": [{"strategy": "train", "steps": 0}]}, "stages.0.steps: expected an integer in [1, 1e8], got 0"),
    ({"stages": [{"strategy": "trian"}]}, "stages.0.strategy: unknown strategy 'trian'; known: branch_train, "),
    ({"stages": [{"strategy": "train", "loss": "huber"}]}, "stages.0.loss: 'huber': expected one of 'mse', 'l1'"),
    ({"stages": []}, "stages: []: expected a non-empty list"),
    ({"space": {"name": "dncn"}}, "space.name: unknown search space 'dncn'; known: dncnn"),
    ({"space": {"name": "dncnn", "layers": 3}}, "space: unknown key 'layers' for space 'dncnn'; allowed: depth"),
    ({"space": {"name": "dncnn", "depth": 1}}, "space: dncnn depth must be in 2..1000, got 1"),
    ({"space": {"name": "dncnn", "channels": 64, "group": 7}}, "space: channels 64 is not a multiple"),
    ({"data": {"patch": -3}}, "data.patch: expected an integer in 1..4096, got -3"),
    ({"data": {"noise": {"sigma": [50, 10]}}}, "data.noise.sigma: expected a non-negative number or [low, high]"),
    ({"data": {"noise": {"kind": "speckle"}}}, "data.noise.kind: 'speckle': expected one of 'gaussian'"),
    ({"seed": -1}, "seed: -1: expected an integer in [0, 2**32)"),
    ({"device": "tpu"}, "device: 'tpu': expected auto, cpu, cuda or cuda:N"),
    ({"extra": 1}, "unknown key 'extra'; allowed: name, seed"),
])
def test_bad_recipes_get_one_line(tmp_path, change: dict, message: str) -> None:
    path = write(tmp_path, {**GOOD, **change})
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(str(path) + ": ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_yaml_and_python_tags(tmp_path) -> None:
    with pytest.raises(RecipeError, match=r"malformed YAML at line 2"):
        load_recipe(write(tmp_path, "space: {name: dncnn\nstages: [\n"))
    with pytest.raises(RecipeError, match="malformed YAML"):
        load_recipe(write(tmp_path, "space: !!python/object/apply:os.system ['echo hacked']\nstages: []\n"))
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_overrides(tmp_path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD), ["stages.0.steps=3", "data.noise.sigma=15", "space.channels=16"])
    assert recipe.stages[0].options.steps == 3 and recipe.data.noise.sigma == 15 and recipe.space["channels"] == 16
    with pytest.raises(RecipeError, match="'7' is not an index of a 2-item list"):
        load_recipe(write(tmp_path, GOOD), ["stages.7.steps=3"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        apply_override({}, "steps", "r.yaml")


def test_graph_written_in_yaml(tmp_path) -> None:
    recipe = {**GOOD, "space": {"nodes": {"in": {"op": "input", "channels": 1},
                                          "c1": {"op": ["conv3x3", "conv5x5"], "channels": 8, "widths": [4, 8]},
                                          "r1": {"op": "relu"}, "c2": {"op": "conv3x3", "channels": 1},
                                          "out": {"op": "output"}},
                                "edges": [["in", "c1"], ["c1", "r1"], ["r1", "c2"], ["c2", "out"]],
                                "residual": True}}
    space = load_recipe(write(tmp_path, recipe)).build_space()
    assert set(space.choices()) == {"op:c1", "width:c1"}
    recipe["space"]["edges"].append(["c2", "c1"])
    with pytest.raises(RecipeError, match="space: cycle: "):
        load_recipe(write(tmp_path, recipe))


def test_cli_validate_exit_codes(tmp_path, capsys) -> None:
    assert main(["validate", str(write(tmp_path, GOOD))]) == 0
    assert "ok: space 'dncnn'" in capsys.readouterr().out
    assert main(["validate", str(write(tmp_path, {**GOOD, "seed": "x"}))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasden: error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_recipe_in_a_subprocess_prints_no_traceback(tmp_path) -> None:
    path = write(tmp_path, "stages: [{strategy: train}]\n")
    done = subprocess.run([sys.executable, "-m", "nasden.cli", "search", str(path), "--out", str(tmp_path / "run")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"nasden: error: {path}: missing key 'space'"
    assert not (tmp_path / "run").exists()


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


@pytest.mark.parametrize("where", ["name", "arch"])
def test_alias_bombs_and_deep_nesting_get_one_line_fast(tmp_path, where) -> None:
    body = LAUGHS + ("name: *i\nspace: {name: toy}\nstages: [{strategy: train}]\n" if where == "name" else
                     "space: {name: toy}\nstages: [{strategy: train, arch: *i}]\n")
    path = tmp_path / "bomb.yaml"
    path.write_text(body)
    started = time.process_time()  # CPU time, not wall-clock: the same on a loaded machine
    with pytest.raises(RecipeError, match="too large"):
        load_recipe(path)
    assert time.process_time() - started < 2
    path.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(RecipeError, match="nested"):
        load_recipe(path)


@pytest.mark.parametrize(("space", "stages", "expected"), [
    ({"name": "slimmable", "depth": 3, "channels": 16}, [{"strategy": "gate"}, {"strategy": "progressive_slimming"}],
     r"stages.0 \(gate\) needs candidates from an earlier stage \(put evolution or progressive_slimming before it\)"),
    ({"name": "nm_branches", "depth": 3, "channels": 8}, [{"strategy": "branch_train"}],
     r"stages.0 \(branch_train\) needs classifier from an earlier stage \(put classifier_pretrain before it\)"),
    ({"name": "dncnn", "depth": 3, "channels": 8}, [{"strategy": "darts"}],
     r"stages.0 \(darts\) needs a space with input or op or width choices; this space has none"),
])
def test_stage_order_is_checked_against_declared_contracts(tmp_path, capsys, space, stages, expected) -> None:
    with pytest.raises(RecipeError, match=expected):
        parse_recipe({**GOOD, "space": space, "stages": stages})
    assert main(["validate", str(write(tmp_path, {**GOOD, "space": space, "stages": stages}))]) == 2
    assert "Traceback" not in capsys.readouterr().err
