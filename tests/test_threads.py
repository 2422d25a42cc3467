"""A process owns its share of the cores: ``--threads``, or the cores available divided by torchrun's local
processes; a bad ``--threads`` is one line."""
from __future__ import annotations

import pytest
import torch

from nasden.cli import main
from nasden.common import threads


@pytest.fixture(autouse=True)
def kept_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_default_is_the_available_cores_shared_among_local_processes(monkeypatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.own_cores() == 6 and torch.get_num_threads() == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four torchrun ranks on this machine
    assert threads.own_cores() == 1 and torch.get_num_threads() == 1
    assert threads.own_cores(3) == 3 and torch.get_num_threads() == 3


def test_the_threads_flag_sets_and_is_checked(capsys) -> None:
    torch.set_num_threads(2)
    assert main(["eval", "missing.pt", "--data", "builtin", "--threads", "1"]) == 2  # no such model: one line
    assert torch.get_num_threads() == 1 and "no such model file" in capsys.readouterr().err
    code = main(["eval", "missing.pt", "--data", "builtin", "--threads", "0"])
    assert code == 2 and "--threads: expected 1..1024, got 0" in capsys.readouterr().err
