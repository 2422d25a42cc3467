"""At least 200 malformed recipes: each gets exit code 2 and one line on stderr, never a traceback, from search and
from validate alike."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from nasden.cli import main

GOOD = {
    "name": "fuzz", "seed": 0, "device": "cpu",
    "data": {"train": "builtin", "val": "builtin", "patch": 16, "batch": 2, "val_images": 1, "val_crop": 32,
             "noise": {"kind": "gaussian", "sigma": 25, "peak": 30}},
    "space": {"name": "dncnn", "depth": 3, "channels": 8, "bn": True},
    "stages": [{"strategy": "train", "steps": 5, "lr": 0.001, "loss": "mse", "checkpoint_every": 2},
               {"strategy": "sandwich", "steps": 4, "n": 4, "distill": "synergy"},
               {"strategy": "gate", "candidates": 4, "beta": 0.2, "budget_ratio": 0.5},
               {"strategy": "evaluate", "sets": ["val"], "latency_size": 32}],
}

INT, FLOAT, STR, BOOL, SIGMA = "int", "float", "str", "bool", "sigma"
FIELDS = {  # path → kind of value it takes
    ("name",): STR, ("seed",): INT, ("device",): STR,
    ("data", "train"): STR, ("data", "val"): STR, ("data", "patch"): INT, ("data", "batch"): INT,
    ("data", "val_images"): INT, ("data", "val_crop"): INT, ("data", "noise", "kind"): STR,
    ("data", "noise", "sigma"): SIGMA, ("data", "noise", "peak"): SIGMA,
    ("space", "depth"): INT, ("space", "channels"): INT, ("space", "bn"): BOOL,
    ("stages", 0, "steps"): INT, ("stages", 0, "lr"): FLOAT, ("stages", 0, "loss"): STR,
    ("stages", 0, "checkpoint_every"): INT, ("stages", 1, "steps"): INT, ("stages", 1, "n"): INT,
    ("stages", 1, "distill"): STR, ("stages", 2, "candidates"): INT, ("stages", 2, "beta"): FLOAT,
    ("stages", 2, "budget_ratio"): FLOAT, ("stages", 3, "sets"): "list", ("stages", 3, "latency_size"): INT,
}
WRONG = {  # values that are wrong for a kind (by type, range or size)
    INT: ["x", 1.5, [], {"a": 1}, True, -5, 10 ** 30, None],
    FLOAT: ["abc", [], {"a": 1}, True, -1.0, float("nan"), float("inf"), 1e300],
    STR: [5, [], {"a": 1}, True, "no-such-thing"],
    BOOL: ["maybe", 2, [], 0.5],
    SIGMA: ["loud", -3, [50, 10], [1, 2, 3], {"a": 1}, True],
    "list": ["val", [], [1, 2], {"a": 1}],
}


def _set(recipe: dict, path: tuple, value: object) -> dict:
    recipe = copy.deepcopy(recipe)
    node = recipe
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return recipe


def _delete(recipe: dict, path: tuple) -> dict:
    recipe = copy.deepcopy(recipe)
    node = recipe
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return recipe


def malformed() -> list[tuple[str, str]]:
    """(id, YAML text) for every malformed recipe."""
    cases: list[tuple[str, object]] = []
    for path, kind in FIELDS.items():
        for i, value in enumerate(WRONG[kind]):
            if kind == STR and path in (("name",), ("data", "train"), ("data", "val")) and isinstance(value, str):
                continue  # any string is a name; a missing folder is tested below
            if value is None and path in (("data", "val_images"), ("data", "val_crop")):
                continue  # optional: null is valid
            cases.append((f"{'.'.join(map(str, path))}={i}", _set(GOOD, path, value)))
    for where in ((), ("data",), ("data", "noise"), ("space",), ("stages", 0), ("stages", 3)):
        for key in ("typo", "stepz", "Data"):
            cases.append((f"unknown {key} in {where}", _set(GOOD, (*where, key), 1)))
    for path in (("space",), ("stages",), ("space", "name"), ("stages", 1, "strategy")):
        cases.append((f"missing {path}", _delete(GOOD, path)))
    for name, value in (("stages empty", []), ("stages mapping", {"a": 1}), ("stages string", "train"),
                        ("stage string", ["train"]), ("stage null", [None]), ("space list", [1])):
        cases.append((name, _set(GOOD, ("stages",) if name.startswith("stage") else ("space",), value)))
    for value in ("nospace", "graph"):
        cases.append((f"space name {value}", _set(GOOD, ("space", "name"), value)))
    cases.append(("graph with a cycle", _set(GOOD, ("space",), {"nodes": {
        "in": {"op": "input", "channels": 1}, "a": {"op": "conv3x3", "channels": 1}, "out": {"op": "output"}},
        "edges": [["in", "a"], ["a", "out"], ["a", "a"]]})))
    cases.append(("data folder missing", _set(GOOD, ("data", "train"), "/no/such/folder")))
    texts = [(name, yaml.safe_dump(recipe)) for name, recipe in cases]
    good = yaml.safe_dump(GOOD)
    texts += [
        ("python object tag", "space: !!python/object/apply:os.system ['echo hacked']\nstages: []\n"),
        ("python name tag", good + "extra: !!python/name:os.system\n"),
        ("python new tag", "!!python/object/new:dict {}\n"),
        ("custom tag", good.replace("name: fuzz", "name: !custom fuzz")),
        ("unclosed bracket", "space: {name: dncnn\nstages: [\n"),
        ("tab indentation", "space:\n\tname: dncnn\n"),
        ("bad indentation", "space:\n  name: dncnn\n bad: 1\nstages: []\n"),
        ("list at top", "- 1\n- 2\n"),
        ("string at top", "just a string\n"),
        ("number at top", "42\n"),
        ("empty file", ""),
        ("null", "~\n"),
        ("binary junk", "\x00\x01\x02"),
        ("duplicate colon", "space: : :\n"),
        ("undefined alias", "space: *nothing\nstages: []\n"),
    ]
    return texts


CASES = malformed()


def test_there_are_at_least_200_cases() -> None:
    assert len(CASES) >= 200


@pytest.mark.parametrize("text", [t for _, t in CASES], ids=[name for name, _ in CASES])
def test_malformed_recipe_gets_one_line_and_exit_2(text: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    code = main(["search", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("nasden: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing half-made
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == err  # validate refuses it with the same line
