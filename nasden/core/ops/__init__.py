"""Dynamic-width ops: each keeps its widest weights and slices them at forward time."""
from nasden.core.ops.base import NM, DynamicOp, Layout, OpSpec

__all__ = ["NM", "DynamicOp", "Layout", "OpSpec"]
