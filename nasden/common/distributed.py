"""Data-parallel training over the processes ``torchrun`` starts.

Under ``torchrun --nproc_per_node K nasden search RECIPE`` every process runs the same recipe.
The stages that train weights (``Strategy.data_parallel``: train, sandwich, darts) run on every
process: each takes its share of every batch (``batch`` is per process, the effective batch is
K × batch) and the gradients are averaged over the processes before every optimiser step, so the
weights stay identical everywhere. Every other stage runs on rank 0 and its outcome is broadcast.
Only rank 0 writes files and TensorBoard.

Why not ``DistributedDataParallel``'s hooks: a sandwich step runs n sub-networks with one backward
each, sub-networks leave parameters without gradients, and a DARTS step takes gradients with
``torch.autograd.grad`` through methods other than ``forward``. DDP needs ``no_sync``,
``find_unused_parameters`` and ``forward`` for these, and still cannot reduce the architecture
gradients. Averaging once per step, after every backward of the step, is the reduction DDP does
(a mean over processes), in one flattened all-reduce, and it fits all three.

The backend is gloo on CPU and NCCL for CUDA tensors (``cpu:gloo,cuda:nccl`` where CUDA exists).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")

#: how long a process waits for the others; rank 0 may run a long non-data-parallel stage alone
TIMEOUT = timedelta(hours=48)


def active() -> bool:
    """Whether this process is one of several in a process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


@contextmanager
def process_group() -> Iterator[bool]:
    """Within it, this process belongs to the process group ``torchrun`` describes in the environment
    (``WORLD_SIZE`` > 1); yields whether there is one. Without torchrun it does nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield False
        return
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield True
    finally:
        dist.destroy_process_group()


def shard() -> tuple[int, int] | None:
    """``(rank, world size)`` under torchrun, else None: which share of a batch this process takes."""
    return (rank(), world_size()) if active() else None


def _flattened(tensors: Iterable[Tensor], collective: Callable[[Tensor], None]) -> None:
    """Run ``collective`` once per device and dtype on the tensors flattened into one, and copy back."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        collective(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset: offset + t.numel()].view(t.shape))
            offset += t.numel()


def _mean(flat: Tensor) -> None:
    dist.all_reduce(flat)
    flat /= world_size()


@torch.no_grad()
def average(tensors: Iterable[Tensor]) -> None:
    """Replace each tensor, in place, by its mean over the processes."""
    if active():
        _flattened(tensors, _mean)


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over the processes. Parameters without a gradient are
    skipped; every process runs the same sub-networks, so they are the same everywhere."""
    average(p.grad for p in parameters if p.grad is not None)


def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the processes."""
    average(b for b in module.buffers() if b.is_floating_point())


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Give every process rank 0's parameters and buffers."""
    if active():
        _flattened([t.data for t in module.parameters()] + list(module.buffers()),
                   lambda flat: dist.broadcast(flat, src=0))


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every process (any picklable object; pass anything on the others)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return box[0]


def from_main(load: Callable[[], T]) -> T:
    """``load()`` run on rank 0 only (it reads rank 0's files, or runs a stage), its result on every
    process; an exception it raises is raised on every process, so each ends with the same message."""
    if not active():
        return load()
    value, error = None, None
    if is_main():
        try:
            value = load()
        except Exception as err:  # re-raised below, on every process
            error = err
    shared_value, shared_error = broadcast_object((value, error))
    if error is not None:
        raise error
    if shared_error is not None:
        raise shared_error
    return shared_value
