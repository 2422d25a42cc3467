"""Recipes: YAML (read with ``safe_load``) → validated config dataclasses.

Every mistake (malformed YAML, unknown key, wrong type, unknown space or strategy, bad number)
raises :class:`RecipeError` with one line naming the file, the key, the value and what was expected.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import reprlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import yaml

from nasden.data import DataConfig, DataError, check_folder
from nasden.errors import NasdenError
from nasden.registry import SPACES, STRATEGIES, UnknownNameError
from nasden.space import SearchSpace, SpaceError
from nasden.strategy import check_stage_order


class RecipeError(NasdenError, ValueError):
    """A recipe that cannot run, described in one line."""


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


# -- typed conversion ---------------------------------------------------------------------------
def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxstring, _REPR.maxother = 3, 4, 4, 4, 40, 40
MAX_VALUES, MAX_DEPTH = 100_000, 64  # a recipe is a few hundred values; aliases can make billions


def _short(value: Any) -> str:
    """A bounded repr: its cost does not grow with the value (aliases can make a small file huge)."""
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_size(raw: Any, source: str) -> None:
    """Refuse a loaded YAML value with more than ``MAX_VALUES`` values (aliases expanded) or deeper than
    ``MAX_DEPTH`` levels, before any work is done on it; iterative, so depth cannot overflow the stack."""
    stack, seen = [(raw, 1)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise RecipeError(f"{source}: too large: more than {MAX_VALUES} values once YAML aliases are expanded")
        if depth > MAX_DEPTH:
            raise RecipeError(f"{source}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, Mapping):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)


def _mismatch(tp: Any, value: Any, where: str) -> RecipeError:
    return RecipeError(f"{where}: {_short(value)}: expected {_describe(tp)}")


def convert(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the type hint ``tp``; ``RecipeError`` otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arm in args:
            try:
                return convert(arm, value, where)
            except RecipeError:
                continue
        raise _mismatch(tp, value, where)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _mismatch(tp, value, where)
    if tp is type(None):
        if value is None:
            return None
        raise _mismatch(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _mismatch(tp, value, where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _mismatch(tp, value, where)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                value = float(value)
            except ValueError:
                raise _mismatch(tp, value, where) from None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _mismatch(tp, value, where)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _mismatch(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _mismatch(tp, value, where)
        return [convert(args[0], v, f"{where}.{i}") for i, v in enumerate(value)] if args else list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _mismatch(tp, value, where)
        return {k: convert(args[1], v, f"{where}.{k}") for k, v in value.items()} if args else dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    raise RecipeError(f"{where}: unsupported option type {tp!r}")


def from_dict(cls: type, data: Any, where: str) -> Any:
    """An instance of dataclass ``cls`` from a mapping, every key and value checked."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RecipeError(f"{where}: {_short(data)}: expected {_describe(cls)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            raise RecipeError(f"{where}: unknown key {key!r}; allowed: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls) if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    for name in required:
        if name not in data:
            raise RecipeError(f"{where}: missing key {name!r}")
    kwargs = {key: convert(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{where}.{err}" if str(err).split(":")[0] in names else f"{where}: {err}") from None


# -- spaces and stages ---------------------------------------------------------------------------
def build_space(spec: Mapping[str, Any], source: str = "<recipe>") -> SearchSpace:
    """The space a recipe's ``space`` section names (``name`` + options, or ``nodes`` + ``edges``)."""
    where = f"{source}: space"
    if not isinstance(spec, Mapping):
        raise RecipeError(f"{where}: {_short(spec)}: expected a mapping with 'name' and options")
    options = dict(spec)
    name = options.pop("name", "graph" if "nodes" in options else None)
    if not isinstance(name, str):
        raise RecipeError(f"{where}.name: {_short(name)}: expected a registered space name; known: "
                          f"{', '.join(SPACES.names())}")
    try:
        factory = SPACES.get(name)
    except UnknownNameError as err:
        raise RecipeError(f"{where}.name: {err}") from None
    signature = inspect.signature(factory)
    hints = typing.get_type_hints(factory)
    for key, value in options.items():
        if key not in signature.parameters:
            raise RecipeError(f"{where}: unknown key {key!r} for space {name!r}; allowed: "
                              f"{', '.join(signature.parameters)}")
        options[key] = convert(hints.get(key, Any), value, f"{where}.{key}")
    try:
        return factory(**options)
    except (SpaceError, ValueError, TypeError) as err:
        raise RecipeError(f"{where}: {err}") from None


def parse_stage(spec: Any, where: str) -> StageConfig:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("strategy"), str):
        raise RecipeError(f"{where}: {_short(spec)}: expected a mapping with 'strategy: NAME' and its options; "
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
        raise RecipeError(f"{source}: expected a mapping with data, space and stages, got {_short(raw)}")
    allowed = ("name", "seed", "device", "data", "space", "stages")
    for key in raw:
        if key not in allowed:
            raise RecipeError(f"{source}: unknown key {key!r}; allowed: {', '.join(allowed)}")
    for key in ("space", "stages"):
        if key not in raw:
            raise RecipeError(f"{source}: missing key {key!r}")
    stages = raw["stages"]
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"{source}: stages: {_short(stages)}: expected a non-empty list of stages")
    name = convert(str, raw.get("name", Path(source).stem), f"{source}: name")
    seed = convert(int, raw.get("seed", 0), f"{source}: seed")
    if not 0 <= seed < 2 ** 32:
        raise RecipeError(f"{source}: seed: {seed}: expected an integer in [0, 2**32)")
    device = convert(str, raw.get("device", "auto"), f"{source}: device")
    if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
        raise RecipeError(f"{source}: device: {device!r}: expected auto, cpu, cuda or cuda:N")
    if not isinstance(raw["space"], Mapping):
        raise RecipeError(f"{source}: space: {_short(raw['space'])}: expected a mapping with 'name' and options")
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
        text = path.read_text()
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
