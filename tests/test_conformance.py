from __future__ import annotations

import pytest

from nasden.registry import STRATEGIES
from nasden.testing.conformance import check_strategy


@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_strategy_conforms(strategy: str, tmp_path) -> None:
    check_strategy(strategy, tmp_path)
