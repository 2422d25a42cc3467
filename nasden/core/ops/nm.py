"""N:M structured sparsity: magnitude masks (at most N non-zeros in every M consecutive input channels)
and the gradient estimators that train through them.

The mask is recomputed from the dense weight at every forward pass. How the gradient reaches the
dense weight is the ``gradient`` rule of :class:`NMGradient`:

* ``sr_ste`` (SR-STE, Zhou et al. 2021, used by ClassPruning): the gradient of the masked weight
  passes straight through to every dense weight, plus ``decay * (1 - mask) * w``, which shrinks the
  pruned weights so the mask settles;
* ``ste``: the plain straight-through estimator (``decay`` 0);
* ``masked``: the gradient of ``w * mask``: pruned weights get none (what the ClassPruning paper
  describes as STE, "only updates the weights that are not set to zero").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from nasden.core.ops.base import NM


def parse_nm(text: str) -> NM:
    """``"2:4"`` → ``(2, 4)``; raises ``ValueError`` unless 0 < N <= M."""
    try:
        n, m = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise ValueError(f"N:M pattern {text!r} is not of the form 'N:M' (e.g. '2:4')") from None
    if not 0 < n <= m:
        raise ValueError(f"N:M pattern {text!r} needs 0 < N <= M")
    return n, m


def density(pattern: str) -> float:
    """The share of weights an N:M pattern keeps: ``"2:4"`` → 0.5."""
    n, m = parse_nm(pattern)
    return n / m


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


@dataclass(frozen=True)
class NMGradient:
    """How gradients reach the dense weight through an N:M mask (see the module docstring)."""

    rule: Literal["sr_ste", "ste", "masked"] = "sr_ste"
    decay: float = 2e-4

    def __post_init__(self) -> None:
        if self.rule not in ("sr_ste", "ste", "masked"):
            raise ValueError(f"N:M gradient rule {self.rule!r}: expected sr_ste, ste or masked")
        if not 0 <= self.decay <= 1:
            raise ValueError(f"SR-STE decay: expected a number in [0, 1], got {self.decay}")


class SparseRefinedSTE(torch.autograd.Function):
    """Forward ``w * mask``; backward ``grad + decay * (1 - mask) * w`` to the dense ``w`` (SR-STE, Eq. 4
    of Zhou et al. 2021; ``decay`` 0 is the plain straight-through estimator)."""

    @staticmethod
    def forward(weight: Tensor, mask: Tensor, decay: float) -> Tensor:  # type: ignore[override]
        return weight * mask

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor, float], output: Tensor) -> None:
        weight, mask, decay = inputs
        ctx.decay = decay
        if decay:
            ctx.save_for_backward(weight, mask)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        if not ctx.decay:
            return grad, None, None
        weight, mask = ctx.saved_tensors
        return grad + ctx.decay * (1 - mask) * weight, None, None


def apply_nm(weight: Tensor, nm: NM | None, gradient: NMGradient = NMGradient()) -> Tensor:
    """``weight`` with its N:M mask applied, differentiable by the ``gradient`` rule."""
    if nm is None:
        return weight
    mask = nm_mask(weight, *nm)
    if mask is None:
        return weight
    if gradient.rule == "masked" or not (weight.requires_grad and torch.is_grad_enabled()):
        return weight * mask
    return SparseRefinedSTE.apply(weight, mask, gradient.decay if gradient.rule == "sr_ste" else 0.0)


def set_nm_gradient(module: nn.Module, gradient: NMGradient) -> None:
    """Use ``gradient`` in every N:M-capable convolution inside ``module``."""
    for child in module.modules():
        if hasattr(child, "nm_gradient"):
            child.nm_gradient = gradient
