"""A layer's candidate ops; a relaxed architecture runs their weighted sum (the DARTS mixed op).

Candidates that are plain convolutions of one stride (any kernel size or dilation, and the
identity) are linear in the same input, so their weighted sum is one convolution with the
weighted sum of their centre-padded kernels: ``sum_i w_i conv(x, K_i) = conv(x, sum_i w_i K_i)``.
The relaxed forward runs that one convolution instead of one per candidate; it is exact, and
autograd carries gradients to every weight ``w_i`` and every kernel ``K_i``. It collapses the
candidates of smallest extent for which the one K×K convolution costs no more than running them
apart (a dilated 5×5 has a 9×9 extent, so it runs on its own beside a collapsed 3×3/5×5/dilated 3×3).
A candidate whose weight is exactly 0 does not run: a one-hot weight vector (a hard Gumbel sample) runs its
candidate alone, and candidates a progressive search dropped (probability 0) cost nothing; they get no gradient.
In training, ``identity_dropout`` > 0 drops the relaxed identity candidate's output elementwise at that rate
(P-DARTS's regularisation against a search that collapses onto parameter-free skips), with ``generator``'s draws.
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.common.registry import OPS
from nasden.core.ops.base import NM, DynamicOp, Layout


def _collapsible(op: DynamicOp) -> bool:
    return hasattr(op, "dense_kernel")


def collapse_plan(candidates: list[DynamicOp]) -> tuple[list[list[int]], list[int]]:
    """Which candidates to run as one collapsed convolution (groups of one stride) and which apart."""
    groups: list[list[int]] = []
    apart: list[int] = []
    by_stride: dict[int, list[int]] = defaultdict(list)
    for i, candidate in enumerate(candidates):
        (by_stride[candidate.stride] if _collapsible(candidate) else apart).append(i)
    for members in by_stride.values():
        members.sort(key=lambda i: candidates[i].extent)
        take = len(members)
        while take > 1 and candidates[members[take - 1]].extent ** 2 > sum(candidates[i].area for i in members[:take]):
            take -= 1
        if take == 1:
            take = 0  # a group of one is just the candidate
        else:
            groups.append(members[:take])
        apart.extend(members[take:])
    return groups, sorted(apart)


def collapsed_conv(x: Tensor, weights: list[Tensor], ops: list[DynamicOp], out: int) -> Tensor:
    """``sum_i weights[i] * ops[i](x)`` for convolutions of one stride, as a single convolution."""
    kernels = [op.dense_kernel(x.shape[1], out) for op in ops]
    size = max(kernel.shape[-1] for kernel, _ in kernels)
    total: Tensor | None = None
    bias: Tensor | None = None
    for weight, (kernel, b) in zip(weights, kernels):
        pad = (size - kernel.shape[-1]) // 2
        term = weight * F.pad(kernel, (pad, pad, pad, pad))
        total = term if total is None else total + term
        if b is not None:
            bias = weight * b if bias is None else bias + weight * b
    assert total is not None
    total = total.to(memory_format=torch.channels_last)  # as DynamicConv does
    return F.conv2d(x, total, bias, ops[0].stride, (size - 1) // 2)


class MixedOp(nn.Module):
    """Holds every candidate op of a layer at its widest and runs one, or a weighted sum of all.

    With ``pre_relu`` the layer applies ReLU to its input once, before whichever candidate runs;
    ``patterns`` are the layer's N:M patterns (for ops with one copy per pattern).
    """

    def __init__(self, ops: tuple[str, ...], cin: int, cout: int, pre_relu: bool = False,
                 patterns: tuple[str, ...] = ()):
        super().__init__()
        self.pre_relu = pre_relu
        self.candidates = nn.ModuleDict({op: OPS.get(op).build(cin, cout, patterns) for op in ops})
        self._plans: dict[tuple[int, ...], tuple[list[list[int]], list[int]]] = {}
        self.identity_dropout = 0.0  # set by a search (P-DARTS); 0 in every other use
        self.generator: torch.Generator | None = None

    def keep(self, ops: set[str]) -> None:
        """Drop every candidate op but ``ops`` (then only those run, by name)."""
        for name in [name for name in self.candidates if name not in ops]:
            del self.candidates[name]
        self._plans = {}

    def _plan(self, running: tuple[int, ...]) -> tuple[list[list[int]], list[int]]:
        """:func:`collapse_plan` of the candidates ``running`` (their indices), cached per set."""
        if running not in self._plans:
            candidates = list(self.candidates.values())
            groups, apart = collapse_plan([candidates[i] for i in running])
            self._plans[running] = ([[running[i] for i in group] for group in groups], [running[i] for i in apart])
        return self._plans[running]

    def reads_layouts(self, op: str | Tensor) -> bool:
        """Whether the layer can run ``op`` on a compact input (``forward``'s ``layout``)."""
        return isinstance(op, str) and self.candidates[op].reads_layouts

    def forward(self, x: Tensor, op: str | Tensor, width: int | Tensor, nm: NM | None = None,
                layout: Layout | None = None) -> Tensor:
        """``op``: a name, or one probability per candidate; ``width``: a count, or one scale per channel;
        ``layout``: ``x`` carries only these channels of the layer's input (where :meth:`reads_layouts`)."""
        if self.pre_relu:
            x = F.relu(x)
        if layout is not None:
            assert isinstance(op, str) and not isinstance(width, Tensor), "a compact input needs a discrete op, width"
            return self.candidates[op](x, width, nm, layout)
        if isinstance(width, Tensor):
            y = self._run(x, op, width.shape[0], nm)
            return y * width.view(1, -1, 1, 1)
        return self._run(x, op, width, nm)

    def _run(self, x: Tensor, op: str | Tensor, out: int, nm: NM | None) -> Tensor:
        if isinstance(op, str):
            return self.candidates[op](x, out, nm)
        candidates = list(self.candidates.values())
        running = tuple(op.detach().nonzero().flatten().tolist())  # a weight of exactly 0: not run, no gradient
        identity = list(self.candidates).index("identity") if "identity" in self.candidates else -1
        dropping = self.training and self.identity_dropout > 0 and identity in running
        if dropping:  # the identity runs apart, through its dropout
            running = tuple(i for i in running if i != identity)
        groups, apart = self._plan(running) if nm is None else ([], running)
        terms = [op[i] * candidates[i](x, out, nm) for i in apart]
        terms += [collapsed_conv(x, [op[i] for i in group], [candidates[i] for i in group], out) for group in groups]
        if dropping:
            y = candidates[identity](x, out, nm)
            kept = torch.rand(y.shape, generator=self.generator, device=y.device) >= self.identity_dropout
            terms.append(op[identity] * y * kept / (1 - self.identity_dropout))
        return sum(terms[1:], terms[0])
