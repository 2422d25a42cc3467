"""Memory this process can still get, and the one-line refusal of work that needs more: sizes from recipes,
flags and image headers are checked before anything is allocated, so a mistyped ``batch: 65536`` is one
line, not a process the kernel kills."""
from __future__ import annotations

import torch

from nasden.common.errors import RecipeError

GB = 1024 ** 3


def available_bytes(device: torch.device | str = "cpu") -> float | None:
    """Memory this process can still get on ``device``: a GPU's free memory, else the host's ``MemAvailable``
    (or the cgroup's limit when lower); None where it cannot be read."""
    if torch.device(device).type == "cuda":
        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            free = min(free, int(limit) - used)
    except (OSError, ValueError):
        pass
    return float(free)


def check_fits(need: float, what: str, advice: str, device: torch.device | str = "cpu") -> None:
    """Refuse, in one line, work that needs ``need`` bytes when ``device`` has less available."""
    have = available_bytes(device)
    if have is not None and need > have:
        where = "this machine" if torch.device(device).type == "cpu" else str(device)
        raise RecipeError(f"{what} needs ~{need / GB:.1f} GB; {where} has {have / GB:.1f} GB available; {advice}")
