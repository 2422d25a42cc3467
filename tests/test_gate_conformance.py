"""Every registered gate passes the gate conformance suite; a gate a package registers through the
``nasden.gates`` entry points is usable from a recipe and passes it with no test of its own."""
from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
import torch
from torch import nn

import nasden.common.registry as registry
from nasden.cli import main
from nasden.common.registry import GATES
from nasden.testing.gates import check_gate


class BrightnessGate(nn.Module):
    """A third party's gate: candidate logits from the image's mean brightness."""

    def __init__(self, candidates: int, scale: float):
        super().__init__()
        self.head = nn.Linear(1, candidates)
        self.flops_per_pixel = 1.0
        self.spec = {"kind": "brightness", "candidates": candidates, "scale": scale}
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.scale * x.mean((1, 2, 3))[:, None])


def brightness_gate(supernet: nn.Module, candidates: int, scale: float = 1.0) -> BrightnessGate:
    return BrightnessGate(candidates, scale)


@pytest.fixture
def plugin(monkeypatch) -> None:
    """The ``brightness`` gate, installed as a package's entry point would be (the registry reads them anew)."""
    point = EntryPoint(name="brightness", value=f"{__name__}:brightness_gate", group="nasden.gates")
    monkeypatch.setattr(registry, "entry_points", lambda group: [point] if group == "nasden.gates" else [])
    monkeypatch.setattr(GATES, "_entries", dict(GATES._entries))
    monkeypatch.setattr(GATES, "_loaded", False)


@pytest.mark.parametrize("name", GATES.names())
def test_registered_gates_conform(name, tmp_path) -> None:
    check_gate(name, tmp_path)


def test_a_plugin_gate_conforms_and_is_listed(plugin, tmp_path, capsys) -> None:
    check_gate("brightness", tmp_path)
    assert main(["ls"]) == 0
    assert "brightness" in capsys.readouterr().out


class Uncosted(BrightnessGate):
    def __init__(self, candidates: int, scale: float):
        super().__init__(candidates, scale)
        del self.flops_per_pixel


def test_the_suite_catches_a_gate_that_breaks_a_promise(plugin, tmp_path) -> None:
    GATES.register("uncosted")(lambda supernet, candidates, scale=1.0: Uncosted(candidates, scale))
    with pytest.raises(AssertionError, match="flops_per_pixel"):
        check_gate("uncosted", tmp_path)
