from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import nasden.common.registry as registry
from nasden.common.registry import Registry, UnknownNameError


def third_party_space() -> str:
    return "built by a plugin"


def test_entry_point_plugins_are_loaded(monkeypatch) -> None:
    point = EntryPoint(name="plugin_space", value=f"{__name__}:third_party_space", group="nasden.test")
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == "nasden.test" else [])
    spaces: Registry = Registry("search space", group="nasden.test")
    assert spaces.names() == ["plugin_space"]
    assert spaces.get("plugin_space")() == "built by a plugin"


def test_register_decorator_and_errors() -> None:
    things: Registry = Registry("thing")

    @things.register("a")
    def a() -> None: ...

    assert "a" in things and things.get("a") is a
    with pytest.raises(ValueError, match="registered twice"):
        things.register("a")(lambda: None)
    with pytest.raises(UnknownNameError, match="unknown thing 'b'; known: a"):
        things.get("b")
