from __future__ import annotations

import pytest

from nasden.registry import STRATEGIES
from nasden.testing.conformance import check_strategy, check_under_torchrun


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_strategy_conforms(strategy: str, tmp_path) -> None:
    check_strategy(strategy, tmp_path)


# the stages test_distributed.py does not already run under torchrun (joint_finetune runs all three ClassPruning stages)
@pytest.mark.parametrize("strategy", ["joint_finetune", "evolution", "evaluate"])
def test_strategy_runs_under_torchrun(strategy: str, tmp_path) -> None:
    check_under_torchrun(strategy, tmp_path)
