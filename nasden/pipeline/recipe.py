"""Recipes: YAML (read with ``safe_load``) → validated config dataclasses.

Every mistake (malformed YAML, unknown key, wrong type, unknown space or strategy, bad number)
raises :class:`RecipeError` with one line naming the file, the key, the value and what was expected.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from nasden.common.config import check_size, convert, from_dict, short_repr
from nasden.common.errors import RecipeError
from nasden.common.registry import STRATEGIES, UnknownNameError
from nasden.core.space import SearchSpace
from nasden.core.specs import build_space
from nasden.data.image_sets import DataConfig, DataError, check_folder
from nasden.pipeline.strategy import check_stage_order

MAX_RECIPE_BYTES = 1024 * 1024


@dataclass
class StageConfig:
    """One stage: a registered strategy and its validated options."""

    strategy: str
    options: Any  # the strategy's Config dataclass


@dataclass
class Recipe:
    """``name``, ``seed``, ``device`` (auto, cpu, cuda[:i]), ``data``, ``space`` and ``stages``."""

    space: dict[str, Any]
    stages: list[StageConfig]
    data: DataConfig = field(default_factory=DataConfig)
    name: str = "run"
    seed: int = 0
    device: str = "auto"
    source: str = "<recipe>"

    def build_space(self) -> SearchSpace:
        return build_space(self.space, self.source)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe (every default filled in), as YAML-ready data."""
        return {
            "name": self.name, "seed": self.seed, "device": self.device,
            "data": dataclasses.asdict(self.data), "space": self.space,
            "stages": [{"strategy": s.strategy, **dataclasses.asdict(s.options)} for s in self.stages],
        }


# -- stages -----------------------------------------------------------------------------------
def parse_stage(spec: Any, where: str) -> StageConfig:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("strategy"), str):
        raise RecipeError(f"{where}: {short_repr(spec)}: expected a mapping with 'strategy: NAME' and its options; "
                          f"known strategies: {', '.join(STRATEGIES.names())}")
    options = dict(spec)
    name = options.pop("strategy")
    try:
        strategy = STRATEGIES.get(name)
    except UnknownNameError as err:
        raise RecipeError(f"{where}.strategy: {err}") from None
    return StageConfig(name, from_dict(strategy.Config, options, f"{where}"))


# -- files and overrides --------------------------------------------------------------------------
def apply_override(raw: dict[str, Any], assignment: str, source: str) -> None:
    """Set ``a.b.0.c=value`` in ``raw``; the value is read as YAML (``-o stages.0.steps=100``)."""
    if "=" not in assignment:
        raise RecipeError(f"{source}: override {assignment!r}: expected KEY=VALUE, e.g. stages.0.steps=100")
    path, text = assignment.split("=", 1)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise RecipeError(f"{source}: override {assignment!r}: the value is not valid YAML") from None
    keys = path.split(".")
    node: Any = raw
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise RecipeError(f"{source}: override {path!r}: {key!r} is not an index of a {len(node)}-item list")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise RecipeError(f"{source}: override {path!r}: {'.'.join(keys[:i])!r} is not a mapping or list")


def parse_recipe(raw: Any, source: str = "<recipe>") -> Recipe:
    """A validated :class:`Recipe` from already-loaded YAML data."""
    check_size(raw, source)
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{source}: expected a mapping with data, space and stages, got {short_repr(raw)}")
    allowed = ("name", "seed", "device", "data", "space", "stages")
    for key in raw:
        if key not in allowed:
            raise RecipeError(f"{source}: unknown key {key!r}; allowed: {', '.join(allowed)}")
    for key in ("space", "stages"):
        if key not in raw:
            raise RecipeError(f"{source}: missing key {key!r}")
    stages = raw["stages"]
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"{source}: stages: {short_repr(stages)}: expected a non-empty list of stages")
    name = convert(str, raw.get("name", Path(source).stem), f"{source}: name")
    seed = convert(int, raw.get("seed", 0), f"{source}: seed")
    if not 0 <= seed < 2 ** 32:
        raise RecipeError(f"{source}: seed: {seed}: expected an integer in [0, 2**32)")
    device = convert(str, raw.get("device", "auto"), f"{source}: device")
    if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise RecipeError(f"{source}: device: {device!r}: expected auto, cpu, cuda or cuda:N")
    if not isinstance(raw["space"], Mapping):
        raise RecipeError(f"{source}: space: {short_repr(raw['space'])}: expected a mapping with 'name' and options")
    recipe = Recipe(
        space=dict(raw["space"]),
        stages=[parse_stage(s, f"{source}: stages.{i}") for i, s in enumerate(stages)],
        data=from_dict(DataConfig, raw.get("data"), f"{source}: data"),
        name=name, seed=seed, device=device, source=source,
    )
    space = recipe.build_space()  # validates the space now, not half-way through a run
    broken = check_stage_order([(s.strategy, STRATEGIES.get(s.strategy)) for s in recipe.stages],
                               {choice.kind for choice in space.choices().values()},
                               {name: STRATEGIES.get(name) for name in STRATEGIES.names()})
    if broken:
        raise RecipeError(f"{source}: {broken}")
    for index, stage in enumerate(recipe.stages):
        try:
            STRATEGIES.get(stage.strategy)(stage.options).check_space(space)
        except ValueError as err:
            raise RecipeError(f"{source}: stages.{index}.{err}") from None
    for key in ("train", "val"):
        folder = getattr(recipe.data, key)
        if folder != "builtin":
            try:
                check_folder(folder)
            except DataError as err:
                raise RecipeError(f"{source}: data.{key}: {err}") from None
    return recipe


def load_recipe(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read, override and validate a recipe file."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise RecipeError(f"{path}: not a regular file; a recipe is a YAML file")
        with path.open("rb") as f:
            data = f.read(MAX_RECIPE_BYTES + 1)
        if len(data) > MAX_RECIPE_BYTES:
            raise RecipeError(f"{path}: larger than {MAX_RECIPE_BYTES // 1024} KB; a recipe is a few hundred lines")
        text = data.decode()
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"{path}: cannot read ({err.__class__.__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply to read") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or err.__class__.__name__
        raise RecipeError(f"{path}: malformed YAML{at}: {' '.join(str(problem).split())}") from None
    if isinstance(raw, dict):
        for assignment in overrides:
            apply_override(raw, assignment, str(path))
    return parse_recipe(raw, str(path))
