"""Extraction: a plain static network with real, smaller tensors for one architecture; export."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from nasden.core.ops.unfold import UnfoldStep
from nasden.core.shapes import chosen_input, chosen_nm, chosen_op, chosen_width, layouts, live_nodes
from nasden.core.space import is_relaxed
from nasden.core.supernet import Supernet, last_uses


class StaticNet(nn.Module):
    """A fixed network: static layers in topological order, joined by add and concat steps.

    It computes in the channels-last memory format, which CPU (oneDNN) and GPU convolution
    kernels run fastest at every width (see bench/realized_speed.py).
    """

    def __init__(self, steps: list[tuple[str, str, tuple[str, ...]]], layers: dict[str, nn.Module],
                 residual: bool):
        super().__init__()
        self.steps = steps
        self.layers = nn.ModuleDict(layers)
        self.residual = residual
        self._frees = last_uses([name for name, _, _ in steps], {name: ins for name, _, ins in steps})
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        values: dict[str, Tensor] = {}
        y = x
        for name, kind, inputs in self.steps:
            if kind == "input":
                y = x
            elif kind == "add":
                y = values[inputs[0]]
                for other in inputs[1:]:
                    y = y + values[other]
            elif kind == "concat":
                y = torch.cat([values[i] for i in inputs], 1)
            elif kind == "layer":
                y = self.layers[name](values[inputs[0]])
            elif kind == "unfold":
                y = self.layers[name](values[inputs[0]], values[inputs[1]], x)
            else:  # output
                y = values[inputs[0]]
            values[name] = y
            for dead in self._frees[name]:
                del values[dead]
        return (x - y if self.residual else y).contiguous()


@torch.no_grad()
def extract(supernet: Supernet, arch: Mapping[str, Any]) -> StaticNet:
    """The static network that computes ``supernet(x, arch)`` with only the weights it uses."""
    space = supernet.space
    if is_relaxed(arch):
        raise ValueError("extract needs a discrete architecture; derive one from the relaxed architecture first")
    space.check(arch)
    shapes = layouts(space, arch)
    live = live_nodes(space, arch)
    steps: list[tuple[str, str, tuple[str, ...]]] = []
    layers: dict[str, nn.Module] = {}
    for name, node in space.nodes.items():
        if name not in live:
            continue
        if node.kind == "unfold":
            step = UnfoldStep()
            step.load_state_dict(supernet.unfold[name].state_dict())
            layers[name] = step
        if node.kind != "layer":
            steps.append((name, node.kind, node.preds))
            continue
        source = chosen_input(node, arch)
        op = supernet.layers[name].candidates[chosen_op(node, arch)]
        static = op.extract(shapes[source], chosen_width(node, arch), chosen_nm(node, arch))
        if node.pre_relu:
            static = nn.Sequential(nn.ReLU(), static)
        layers[name] = static.train(supernet.training)
        steps.append((name, "layer", (source,)))
    return StaticNet(steps, layers, space.residual).to(next(supernet.parameters()).device)


def export_torchscript(model: nn.Module, example: Tensor, path: str | Path) -> Path:
    """Trace ``model`` on ``example`` and save it as TorchScript."""
    traced = torch.jit.trace(model.eval(), example)
    torch.jit.save(traced, str(path))
    return Path(path)


def export_onnx(model: nn.Module, example: Tensor, path: str | Path) -> Path:
    """Write ONNX with dynamic batch and spatial axes (needs the ``onnx`` package)."""
    torch.onnx.export(model.eval(), (example,), str(path), input_names=["noisy"], output_names=["denoised"],
                      dynamic_axes={"noisy": {0: "batch", 2: "height", 3: "width"},
                                    "denoised": {0: "batch", 2: "height", 3: "width"}}, dynamo=False)
    return Path(path)
