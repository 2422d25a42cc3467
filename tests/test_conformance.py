from __future__ import annotations

from dataclasses import dataclass

import pytest

from nasden.common.registry import STRATEGIES
from nasden.pipeline.strategy import Strategy
from nasden.testing.conformance import check_strategy, check_under_torchrun


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_strategy_conforms(strategy: str, tmp_path) -> None:
    check_strategy(strategy, tmp_path)


# the stages test_distributed.py does not already run under torchrun (joint_finetune runs all three ClassPruning stages)
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["joint_finetune", "evolution", "evaluate"])
def test_strategy_runs_under_torchrun(strategy: str, tmp_path) -> None:
    check_under_torchrun(strategy, tmp_path)


@dataclass
class NoOptions:
    steps: int = 1


class LeavesNothing(Strategy):
    """Declares candidates but leaves none."""

    Config = NoOptions
    provides = frozenset({"candidates"})

    def _run(self, ctx) -> dict:
        return {}


class WritesBeside(LeavesNothing):
    """Writes a file next to the run folder's own files, in place."""

    provides = frozenset()

    def _run(self, ctx) -> dict:
        (ctx.run.run_dir / "notes.txt").write_text("written in place, outside the stage folder")
        return {}


@pytest.mark.parametrize("cls, complaint", [(LeavesNothing, "provides 'candidates' but left it empty"),
                                            (WritesBeside, "wrote notes.txt outside its stage folder")])
def test_the_suite_catches_a_broken_promise(cls, complaint: str, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(STRATEGIES._entries, "broken", cls)
    with pytest.raises(AssertionError, match=complaint):
        check_strategy("broken", tmp_path)


def test_a_strategy_providing_what_no_slot_holds_is_refused_when_defined() -> None:
    from nasden.pipeline.run import SLOTS
    from nasden.pipeline.strategy import SLOT_NAMES
    assert set(SLOTS) == SLOT_NAMES
    with pytest.raises(TypeError, match="'candidate', which no run slot holds"):
        class Misspelt(LeavesNothing):
            provides = frozenset({"candidate"})
