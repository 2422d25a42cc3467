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


def export(model: nn.Module, space: SearchSpace, spec: dict[str, Any], out: Path, fmt: str,
           overwrite: bool = False) -> dict[str, Any]:
    """Write ``model`` to the folder ``out`` as TorchScript or ONNX, with ``manifest.json``; returns the manifest.

    A dynamic network's TorchScript is one module with methods ``gate`` and ``candidate0..E-1`` over one
    shared weight set; ONNX, which has no methods, gets one graph per candidate. The manifest states the
    routing rule. Every file is checked before the first is written (an existing one is replaced only with
    ``overwrite``) and written atomically."""
    suffix = ".onnx" if fmt == "onnx" else ".pt"
    write = export_onnx if fmt == "onnx" else export_torchscript
    if not is_dynamic(model):
        modules = {f"denoiser{suffix}": (model, write)}
    elif fmt == "onnx":
        modules = {"gate.onnx": (model.gate, write),
                   **{f"candidate{i}.onnx": (c, write) for i, c in enumerate(model.candidates)}}
    else:
        modules = {"denoiser.pt": (model, _export_shared_torchscript)}
    if out.exists() and not out.is_dir():
        raise WriteError(f"{out}: is not a folder; --out must name a new or existing folder")
    for name in [*modules, "manifest.json"]:
        check_target(out / name, overwrite)
    example = torch.rand(2, space.in_channels, 64, 64)
    for name, (module, writer) in modules.items():
        atomic_write(out / name, lambda tmp, module=module, writer=writer: writer(module, example, tmp), suffix=suffix)
    manifest: dict[str, Any] = {"format": fmt, "in_channels": space.in_channels,
                                "size_multiple": space.resolution_multiple, "network": spec}
    if not is_dynamic(model) or fmt != "onnx":
        manifest["file"] = f"denoiser{suffix}"
    else:
        names = list(modules)
        manifest["gate"], manifest["candidates"] = names[0], names[1:]
    if is_dynamic(model):
        if fmt != "onnx":
            manifest["methods"] = ["gate", *(f"candidate{i}" for i in range(len(model.candidates)))]
        manifest["routing"] = DynamicDenoiser.routing_rule
    save_json(manifest, out / "manifest.json")
    return manifest


def _export_shared_torchscript(model: DynamicDenoiser, example: Tensor, path: str | Path) -> Path:
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
