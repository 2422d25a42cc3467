"""JSON specs that rebuild what a run made: a space from its recipe section, a network from its spec.

A network spec is

* ``{"kind": "static", "arch": A}``: the static network extracted from the supernet at A;
* ``{"kind": "dynamic", "archs": [A_1..A_E], "flops": [...], "gate": gate spec, "cost_bias": b}``: a
  :class:`~nasden.core.dynamic.DynamicDenoiser`, one shared weight set and a routing gate
  (:func:`nasden.core.gates.gate_from_spec`).
"""
from __future__ import annotations

import inspect
import typing
from typing import Any, Mapping

from torch import nn

from nasden.common.config import convert, short_repr
from nasden.common.errors import RecipeError
from nasden.common.registry import SPACES, UnknownNameError
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.extract import extract
from nasden.core.gates import gate_from_spec
from nasden.core.space import Architecture, SearchSpace, SpaceError
from nasden.core.supernet import Supernet


def build_space(spec: Mapping[str, Any], source: str = "<recipe>") -> SearchSpace:
    """The space a recipe's ``space`` section names (``name`` + options, or ``nodes`` + ``edges``)."""
    where = f"{source}: space"
    if not isinstance(spec, Mapping):
        raise RecipeError(f"{where}: {short_repr(spec)}: expected a mapping with 'name' and options")
    options = dict(spec)
    name = options.pop("name", "graph" if "nodes" in options else None)
    if not isinstance(name, str):
        raise RecipeError(f"{where}.name: {short_repr(name)}: expected a registered space name; known: "
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


def static_spec(arch: Architecture) -> dict[str, Any]:
    return {"kind": "static", "arch": dict(arch)}


def dynamic_spec(model: DynamicDenoiser) -> dict[str, Any]:
    return {"kind": "dynamic", "archs": model.archs, "flops": model.flops, "gate": model.gate.spec,
            "cost_bias": model.cost_bias}


def is_dynamic(model: nn.Module) -> bool:
    return isinstance(model, DynamicDenoiser)


def build_network(space: SearchSpace, spec: dict[str, Any]) -> nn.Module:
    """The untrained network ``spec`` describes, ready for ``load_state_dict``."""
    supernet = Supernet(space)
    if spec["kind"] == "static":
        return extract(supernet, spec["arch"])
    return DynamicDenoiser(gate_from_spec(supernet, spec["gate"]), supernet, spec["archs"], spec["flops"],
                           spec.get("cost_bias", 0.0))
