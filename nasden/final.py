"""The network a run deploys, static or dynamic: its spec, and how it is built, saved, loaded, described
and exported. Everything outside this module treats it as an ``nn.Module`` plus its spec.

A spec is JSON:

* ``{"kind": "static", "arch": A}``: the static network extracted from the supernet at A;
* ``{"kind": "dynamic", "archs": [A_1..A_E], "flops": [...], "gate": gate spec, "cost_bias": b}``: a
  :class:`~nasden.dynamic.DynamicDenoiser`, one shared weight set and a routing gate
  (:func:`nasden.gates.gate_from_spec`).

``final.pt`` holds ``{"format": 2, "spec", "state_dict"}``. Format 1 (no ``format`` key) stored a dynamic
network as E separately extracted networks; :func:`load` converts it from the run's ``context.pt``, and
checks that the converted network computes what the old one did.
"""
from __future__ import annotations

import types
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from nasden.atomic import atomic_write, check_target
from nasden.cost import cost
from nasden.dynamic import DynamicDenoiser
from nasden.errors import RunError, WriteError
from nasden.extract import export_onnx, export_torchscript, extract
from nasden.gates import gate_from_spec
from nasden.recipe import load_recipe
from nasden.space import Architecture, SearchSpace
from nasden.storage import load_torch, save_json, save_torch
from nasden.supernet import Supernet

FORMAT = 2


class Final(NamedTuple):
    """A run's deployable network: the space it comes from, its spec and the trained module."""

    space: SearchSpace
    spec: dict[str, Any]
    model: nn.Module


def static_spec(arch: Architecture) -> dict[str, Any]:
    return {"kind": "static", "arch": dict(arch)}


def dynamic_spec(model: DynamicDenoiser) -> dict[str, Any]:
    return {"kind": "dynamic", "archs": model.archs, "flops": model.flops, "gate": model.gate.spec,
            "cost_bias": model.cost_bias}


def is_dynamic(model: nn.Module) -> bool:
    return isinstance(model, DynamicDenoiser)


def build(space: SearchSpace, spec: dict[str, Any]) -> nn.Module:
    """The untrained network ``spec`` describes, ready for ``load_state_dict``."""
    supernet = Supernet(space)
    if spec["kind"] == "static":
        return extract(supernet, spec["arch"])
    return DynamicDenoiser(gate_from_spec(supernet, spec["gate"]), supernet, spec["archs"], spec["flops"],
                           spec.get("cost_bias", 0.0))


def trained(space: SearchSpace, spec: dict[str, Any], state_dict: dict[str, Any],
            device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a final network and load its trained weights (in eval mode on ``device``)."""
    model = build(space, spec)
    model.load_state_dict(state_dict)
    return model.to(device).eval()


def save(model: nn.Module, spec: dict[str, Any], path: Path) -> None:
    save_torch({"format": FORMAT, "spec": spec, "state_dict": model.state_dict()}, path)


def load(run_dir: Path, device: torch.device | str = "cpu") -> Final:
    """The trained final network of the run in ``run_dir``."""
    path = run_dir / "final.pt"
    if not path.exists():
        raise RunError(f"{run_dir}: no final network yet (final.pt); a train or gate stage writes it")
    state = load_torch(path)
    if not isinstance(state, dict) or not {"spec", "state_dict"} <= state.keys():
        raise RunError(f"{path}: not a final network written by nasden; run the recipe again")
    space = load_recipe(run_dir / "recipe.yaml").build_space()
    if state.get("format", 1) == 1 and state["spec"]["kind"] == "dynamic":
        return Final(space, *_convert_format_1(run_dir, space, state, device))
    return Final(space, state["spec"], trained(space, state["spec"], state["state_dict"], device))


def _convert_format_1(run_dir: Path, space: SearchSpace, state: dict[str, Any],
                      device: torch.device | str) -> tuple[dict[str, Any], nn.Module]:
    """A format-1 dynamic network (E extracted networks) as one shared network, from the run's supernet."""
    old_spec, weights = state["spec"], state["state_dict"]
    context = run_dir / "context.pt"
    if not context.exists():
        raise RunError(f"{run_dir / 'final.pt'} stores one network per candidate (nasden before shared weights) and "
                       f"the run has no context.pt to convert it from; run the recipe again")
    supernet = Supernet(space)
    supernet.load_state_dict(load_torch(context)["supernet"])
    gate = gate_from_spec(supernet, old_spec["gate"])
    gate.load_state_dict({k[len("gate."):]: v for k, v in weights.items() if k.startswith("gate.")})
    archs = old_spec["archs"]
    old = [extract(supernet, arch) for arch in archs]
    for index, network in enumerate(old):
        prefix = f"candidates.{index}."
        network.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
    model = DynamicDenoiser(gate, supernet, archs, old_spec["flops"], old_spec.get("cost_bias", 0.0))
    model.eval()
    probe = torch.rand(1, space.in_channels, 4 * space.resolution_multiple, 4 * space.resolution_multiple)
    with torch.no_grad():
        same = [torch.allclose(view(probe), net.eval()(probe), atol=1e-4) for view, net in zip(model.candidates, old)]
        if not all(same):
            raise RunError(f"{run_dir / 'final.pt'} stores one network per candidate (nasden before shared weights) "
                           f"and they differ from the run's supernet; run the recipe again")
    return dynamic_spec(model), model.to(device)


def describe(model: nn.Module, space: SearchSpace, spec: dict[str, Any]) -> dict[str, Any]:
    """Parameters and FLOPs/pixel of a final network (for a dynamic one: per candidate, and the gate's)."""
    params = sum(p.numel() for p in model.parameters())
    if not is_dynamic(model):
        return {"kind": "static", "params": params, "flops_per_pixel": cost(space, spec["arch"]).flops_per_pixel}
    return {"kind": "dynamic", "params": params, "gate_params": sum(p.numel() for p in model.gate.parameters()),
            "candidate_flops_per_pixel": model.flops, "gate_flops_per_pixel": model.gate_flops,
            "separate_candidates_params": sum(cost(space, arch).params for arch in model.archs)}


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
