"""Typed configuration: YAML or JSON values checked against type hints and config dataclasses.

Every mismatch raises :class:`~nasden.common.errors.RecipeError` with one line naming where the value is,
the value (bounded) and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from typing import Any, Literal, Mapping, Union

from nasden.common.errors import RecipeError


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


def short_repr(value: Any) -> str:
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
    return RecipeError(f"{where}: {short_repr(value)}: expected {_describe(tp)}")


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
        raise RecipeError(f"{where}: {short_repr(data)}: expected {_describe(cls)}")
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
