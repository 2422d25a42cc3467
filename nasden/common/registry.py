"""Name → object registries for ops, search spaces, strategies and routing gates.

Built-ins register themselves with a decorator when their module is imported; third-party
packages add entries through entry-point groups (``nasden.search_spaces``,
``nasden.strategies``, ``nasden.ops``, ``nasden.gates``), loaded the first time a registry is read.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

from nasden.common.errors import NasdenError

T = TypeVar("T")


class UnknownNameError(NasdenError, KeyError):
    """A name that no registry entry has; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    """A mapping from names to objects, filled by ``@registry.register("name")``."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), group: str | None = None):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._builtin_modules = builtin_modules
        self._group = group
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``name``."""

        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)
        if self._group:
            for ep in entry_points(group=self._group):
                self._entries.setdefault(ep.name, ep.load())

    def get(self, name: str) -> T:
        """The entry called ``name``; ``UnknownNameError`` lists the known names otherwise."""
        self._load()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load()
        return sorted(self._entries)


OPS: Registry = Registry("op", ("nasden.core.ops.catalog",), "nasden.ops")
SPACES: Registry = Registry("search space", ("nasden.search_spaces",), "nasden.search_spaces")
STRATEGIES: Registry = Registry("strategy", ("nasden.strategies",), "nasden.strategies")
GATES: Registry = Registry("gate", ("nasden.core.gates",), "nasden.gates")

register_space = SPACES.register
register_strategy = STRATEGIES.register
register_gate = GATES.register
