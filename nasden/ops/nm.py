"""N:M structured sparsity masks (at most N non-zeros in every M consecutive input channels)."""
from __future__ import annotations

import torch
from torch import Tensor

from nasden.ops.base import NM


def parse_nm(text: str) -> NM:
    """``"2:4"`` → ``(2, 4)``; raises ``ValueError`` unless 0 < N <= M."""
    try:
        n, m = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise ValueError(f"N:M pattern {text!r} is not of the form 'N:M' (e.g. '2:4')") from None
    if not 0 < n <= m:
        raise ValueError(f"N:M pattern {text!r} needs 0 < N <= M")
    return n, m


def nm_mask(weight: Tensor, n: int, m: int) -> Tensor | None:
    """Magnitude mask keeping the N largest of each M input channels of every filter tap.

    ``weight`` is ``[out, in, kh, kw]``; groups run along ``in`` for each ``(out, kh, kw)``, the
    layout sparse tensor cores use. Returns ``None`` (dense) when N == M or ``in`` is not a
    multiple of M.
    """
    cout, cin, kh, kw = weight.shape
    if n == m or cin % m:
        return None
    grouped = weight.detach().abs().permute(0, 2, 3, 1).reshape(-1, m)
    keep = grouped.topk(n, dim=1).indices
    mask = torch.zeros_like(grouped).scatter_(1, keep, 1.0)
    return mask.reshape(cout, kh, kw, cin).permute(0, 3, 1, 2)


def apply_nm(weight: Tensor, nm: NM | None) -> Tensor:
    """``weight`` with its N:M mask applied (gradients reach the kept weights only)."""
    if nm is None:
        return weight
    mask = nm_mask(weight, *nm)
    return weight if mask is None else weight * mask
