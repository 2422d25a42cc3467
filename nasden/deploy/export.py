"""Exporting a final network to TorchScript or ONNX, with a ``manifest.json`` that says how to run it."""
from __future__ import annotations

import types
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nasden.common.atomic import atomic_write, check_target
from nasden.common.errors import WriteError
from nasden.common.storage import save_json
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.extract import export_onnx, export_torchscript
from nasden.core.space import SearchSpace
from nasden.core.specs import is_dynamic

FORMATS = ("torchscript", "onnx", "onnx-candidates")


def export(model: nn.Module, space: SearchSpace, spec: dict[str, Any], out: Path, fmt: str,
           overwrite: bool = False) -> dict[str, Any]:
    """Write ``model`` to the folder ``out`` in ``fmt`` (:data:`FORMATS`), with ``manifest.json``; returns the
    manifest.

    A dynamic network is one file over one shared weight set either way: TorchScript as a module with methods
    ``gate`` and ``candidate0..E-1``; ONNX as one graph that runs the gate and then, per image, the chosen
    candidate in an ``If`` branch whose subgraph reads the outer graph's weights (ONNX Runtime runs it).
    ``onnx-candidates`` writes the gate and each candidate as graphs of their own instead, for a runtime
    without ``If``. The manifest states the routing rule. Every file is checked before the first is written
    (an existing one is replaced only with ``overwrite``) and written atomically."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    suffix = ".pt" if fmt == "torchscript" else ".onnx"
    write = export_torchscript if fmt == "torchscript" else export_onnx
    if not is_dynamic(model):
        modules = {f"denoiser{suffix}": (model, write)}
    elif fmt == "onnx-candidates":
        modules = {"gate.onnx": (model.gate, write),
                   **{f"candidate{i}.onnx": (c, write) for i, c in enumerate(model.candidates)}}
    else:
        modules = {f"denoiser{suffix}": (model, _shared_torchscript if fmt == "torchscript" else _routed_onnx)}
    if out.exists() and not out.is_dir():
        raise WriteError(f"{out}: is not a folder; --out must name a new or existing folder")
    for name in [*modules, "manifest.json"]:
        check_target(out / name, overwrite)
    example = torch.rand(2, space.in_channels, 64, 64)
    for name, (module, writer) in modules.items():
        atomic_write(out / name, lambda tmp, module=module, writer=writer: writer(module, example, tmp), suffix=suffix)
    manifest: dict[str, Any] = {"format": fmt, "in_channels": space.in_channels,
                                "size_multiple": space.resolution_multiple, "network": spec}
    if fmt == "onnx-candidates" and is_dynamic(model):
        names = list(modules)
        manifest["gate"], manifest["candidates"] = names[0], names[1:]
    else:
        manifest["file"] = f"denoiser{suffix}"
    if is_dynamic(model):
        if fmt == "torchscript":
            manifest["methods"] = ["gate", *(f"candidate{i}" for i in range(len(model.candidates)))]
        manifest["routing"] = ("in the graph, per image: " if fmt == "onnx" else "") + DynamicDenoiser.routing_rule
    save_json(manifest, out / "manifest.json")
    return manifest


class _Routed(nn.Module):
    """The gate, then per image the candidate it chooses: control flow that scripting keeps, so that the ONNX
    exporter writes it as a loop over the batch with an ``If`` per candidate."""

    def __init__(self, gate: nn.Module, candidates: list[nn.Module], price: Tensor):
        super().__init__()
        self.gate = gate
        self.candidates = nn.ModuleList(candidates)
        self.register_buffer("price", price)

    def forward(self, x: Tensor) -> Tensor:
        choices = torch.argmax(self.gate(x) - self.price, dim=1)
        outputs: list[Tensor] = []
        for index in range(x.shape[0]):
            image = x[index:index + 1]
            output = image
            for candidate_index, candidate in enumerate(self.candidates):
                if bool(choices[index] == candidate_index):
                    output = candidate(image)
            outputs.append(output)
        return torch.cat(outputs)


def _routed_onnx(model: DynamicDenoiser, example: Tensor, path: str | Path) -> Path:
    """One ONNX graph of a dynamic network: weights stored once, the routing inside (see :class:`_Routed`)."""
    one = example[:1]
    with warnings.catch_warnings(), torch.no_grad():  # the tracer flags the supernet's channel checks,
        warnings.simplefilter("ignore")  # constants of the network, and the exporter its legacy path
        routed = torch.jit.script(_Routed(torch.jit.trace(model.gate.eval(), one),
                                          [torch.jit.trace(c.eval(), one) for c in model.candidates],
                                          model.cost_bias * model.relative_flops))
        axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(routed, (one,), str(path), input_names=["noisy"], output_names=["denoised"],
                          dynamic_axes={"noisy": axes, "denoised": axes}, dynamo=False, do_constant_folding=False)
    return Path(path)


def _shared_torchscript(model: DynamicDenoiser, example: Tensor, path: str | Path) -> Path:
    """One TorchScript module whose methods (``gate``, ``candidate<i>``) share the network's weights."""
    holder = nn.Module()
    holder.gate_module, holder.network, holder.statistics = model.gate, model.network, model.statistics
    methods: dict[str, Any] = {"gate": lambda x: model.gate(x)}
    methods.update({f"candidate{i}": candidate.forward for i, candidate in enumerate(model.candidates)})
    for name, method in methods.items():
        setattr(holder, name, types.MethodType(lambda self, x, run=method: run(x), holder))
    holder.eval()
    with warnings.catch_warnings(), torch.no_grad():  # the tracer flags the supernet's channel checks,
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # constants of the network
        traced = torch.jit.trace_module(holder, {name: (example,) for name in methods})
    torch.jit.save(traced, str(path))
    return Path(path)
