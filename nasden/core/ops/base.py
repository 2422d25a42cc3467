"""The contract every searchable op fulfils, and the spec that registers it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

from torch import Tensor, nn


class Layout(NamedTuple):
    """Which channels of the widest tensor a sub-network's tensor carries.

    ``positions`` index the widest channel axis (a ``range`` when contiguous); ``length`` is the
    channel count of the tensor the supernet computes (it zero-pads where a concat input is slim).
    """

    positions: Sequence[int]
    length: int

    @classmethod
    def dense(cls, channels: int) -> Layout:
        return cls(range(channels), channels)

    @property
    def channels(self) -> int:
        return len(self.positions)


NM = tuple[int, int]


class DynamicOp(nn.Module):
    """An op holding its widest weights; it runs at any input/output width and extracts a static copy.

    Subclasses implement ``forward(x, out, nm)``, ``extract(layout, out, nm)`` and the classmethod
    ``cost(cin, cout, **hparams)``. One that sets ``reads_layouts`` also takes ``forward(x, out, nm, layout)``:
    an input that carries only ``layout.positions`` of its channels (the zero ones left out).
    """

    reads_layouts = False

    def forward(self, x: Tensor, out: int, nm: NM | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def extract(self, layout: Layout, out: int, nm: NM | None = None) -> nn.Module:  # pragma: no cover
        """A plain static module equal to ``forward`` on an input with ``layout`` and ``out`` outputs."""
        raise NotImplementedError

    @classmethod
    def cost(cls, cin: int, cout: int, **hparams: Any) -> tuple[float, int]:  # pragma: no cover
        """(multiply-adds per output pixel, parameters) at the given widths."""
        raise NotImplementedError


@dataclass(frozen=True)
class OpSpec:
    """A registered op: its class, hyper-parameters and how it changes the tensor.

    ``scale`` is +1 for an op that halves the resolution, -1 for one that doubles it.
    ``preserves_channels`` ops (ReLU, BN, identity) output what they are given.
    ``in_multiple``: input channels must be a multiple of it (pixel shuffle needs 4).
    ``per_pattern`` ops keep one copy per N:M pattern of their layer (variable BatchNorm) and are
    built with ``patterns``, the layer's pattern strings.
    """

    name: str
    cls: type[DynamicOp]
    hparams: dict[str, Any] = field(default_factory=dict)
    scale: int = 0
    preserves_channels: bool = False
    in_multiple: int = 1
    supports_nm: bool = False
    per_pattern: bool = False

    def describe(self) -> str:
        """One line: the class and hyper-parameters, and what the op does to the resolution and to N:M."""
        options = ", ".join(f"{key}={value!r}" for key, value in self.hparams.items())
        notes = {1: ["halves the resolution"], -1: ["doubles the resolution"]}.get(self.scale, [])
        notes += ["N:M sparsity"] if self.supports_nm else []
        return f"{self.cls.__name__}({options})" + (f": {', '.join(notes)}" if notes else "")

    def build(self, cin: int, cout: int, patterns: Sequence[str] = ()) -> DynamicOp:
        if self.per_pattern:
            return self.cls(cin, cout, patterns=tuple(patterns), **self.hparams)
        return self.cls(cin, cout, **self.hparams)

    def cost(self, cin: int, cout: int) -> tuple[float, int]:
        return self.cls.cost(cin, cout, **self.hparams)
