"""Each process owns its cores: PyTorch's intra-op threads set to the cores a process was given, never more.

Two PyTorch processes that each spin a thread per core on the same cores slow each other many times over, so
a process sets its threads to ``--threads`` or, by default, to the cores available to it divided by the
processes started on this machine beside it (torchrun's local ranks); a stage that spreads its work over
worker processes divides its share again among them.
"""
from __future__ import annotations

import os

import torch


def cores_available() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_processes() -> int:
    """Processes of this job on this machine: torchrun's ``LOCAL_WORLD_SIZE``, else 1."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def own_cores(threads: int | None = None) -> int:
    """Set this process's intra-op threads to ``threads``, or to its share of the cores; returns the count."""
    count = threads or max(1, cores_available() // local_processes())
    torch.set_num_threads(count)
    return count
