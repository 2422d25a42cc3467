"""A layer's candidate ops; a relaxed architecture runs their weighted sum (the DARTS mixed op)."""
from __future__ import annotations

from torch import Tensor, nn

from nasden.ops.base import NM
from nasden.registry import OPS


class MixedOp(nn.Module):
    """Holds every candidate op of a layer at its widest and runs one, or a weighted sum of all."""

    def __init__(self, ops: tuple[str, ...], cin: int, cout: int):
        super().__init__()
        self.candidates = nn.ModuleDict({op: OPS.get(op).build(cin, cout) for op in ops})

    def forward(self, x: Tensor, op: str | Tensor, width: int | Tensor, nm: NM | None = None) -> Tensor:
        """``op``: a name, or one probability per candidate; ``width``: a count, or one scale per channel."""
        if isinstance(width, Tensor):
            y = self._run(x, op, width.shape[0], nm)
            return y * width.view(1, -1, 1, 1)
        return self._run(x, op, width, nm)

    def _run(self, x: Tensor, op: str | Tensor, out: int, nm: NM | None) -> Tensor:
        if isinstance(op, str):
            return self.candidates[op](x, out, nm)
        total: Tensor | None = None
        for weight, candidate in zip(op, self.candidates.values()):
            y = weight * candidate(x, out, nm)
            total = y if total is None else total + y
        assert total is not None
        return total
