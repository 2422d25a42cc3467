"""The model file, ``final.pt``: everything needed to rebuild and run a run's network, on its own.

Format 3 holds ``{"format", "nasden", "space", "spec", "trained_on", "state_dict"}``: the recipe's space
section (rebuilt through the space registry), the network spec (:mod:`nasden.core.specs`), what it was
trained on (``train``: the data source, ``noise``: the synthetic noise, ``real_noise``: whether the training
set held real noisy/clean pairs) and the weights. Such a file loads anywhere nasden is installed: copied out
of its run folder, on another machine, with no data.

Older files carry no space: format 2 (``spec`` + ``state_dict``) and format 1 (a dynamic network stored as E
separately extracted networks) load from their run folder, whose ``recipe.yaml`` gives the space; format 1 is
converted from the run's ``context.pt`` and checked to compute what it did.
"""
from __future__ import annotations

import dataclasses
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from nasden.common.config import check_size, from_dict
from nasden.common.errors import NasdenError, RecipeError, RunError
from nasden.common.storage import load_torch, save_torch
from nasden.core.cost import cost
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.extract import extract
from nasden.core.gates import gate_from_spec
from nasden.core.space import SearchSpace
from nasden.core.specs import build_network, build_space, dynamic_spec, is_dynamic
from nasden.core.supernet import Supernet
from nasden.data.image_sets import DataConfig, is_pair_set

FORMAT = 3
FILE_NAME = "final.pt"


@dataclass
class ModelFile:
    """A loaded model file: the space, the network spec, the trained network (eval mode) and what it was
    trained on."""

    space: SearchSpace
    spec: dict[str, Any]
    network: nn.Module
    trained_on: dict[str, Any]
    path: Path


def training_record(data: DataConfig) -> dict[str, Any]:
    """What a network trained on ``data`` records of it: the source, the noise, whether it was real."""
    try:
        real = is_pair_set(data.train)
    except NasdenError:  # a data folder that is gone (an old run loaded elsewhere): unknown
        real = None
    return {"train": data.train, "noise": dataclasses.asdict(data.noise), "real_noise": real}


def _version() -> str:
    try:
        return importlib.metadata.version("nasden")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def trained(space: SearchSpace, spec: dict[str, Any], state_dict: dict[str, Any],
            device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild a final network and load its trained weights (in eval mode on ``device``)."""
    model = build_network(space, spec)
    model.load_state_dict(state_dict)
    return model.to(device).eval()


def save(model: nn.Module, spec: dict[str, Any], path: Path, space_spec: dict[str, Any],
         trained_on: dict[str, Any]) -> None:
    """Write ``model`` as a self-contained model file (format 3) at ``path``, atomically."""
    save_torch({"format": FORMAT, "nasden": _version(), "space": dict(space_spec), "spec": spec,
                "trained_on": trained_on, "state_dict": model.state_dict()}, path)


def locate(path: Path) -> Path:
    """The model file ``path`` names: the file itself, or ``final.pt`` in a run folder."""
    if path.is_dir():
        file = path / FILE_NAME
        if not file.exists():
            raise RunError(f"{path}: no final network yet ({FILE_NAME}); a train or gate stage writes it")
        return file
    if not path.exists():
        raise RunError(f"{path}: no such model file or run folder")
    return path


def load(path: Path, device: torch.device | str = "cpu") -> ModelFile:
    """The model file at ``path`` (a file, or a run folder holding ``final.pt``), rebuilt and trained."""
    file = locate(Path(path))
    state = load_torch(file)
    if not isinstance(state, dict) or not {"spec", "state_dict"} <= state.keys() or not isinstance(
            state["spec"], dict):
        raise RunError(f"{file}: not a model file written by nasden")
    version = state.get("format", 1)
    if not isinstance(version, int) or version > FORMAT:
        raise RunError(f"{file}: model file format {version!r}, newer than this nasden reads ({FORMAT}); "
                       f"upgrade nasden")
    if version >= 3:
        space_spec, trained_on = state["space"], state["trained_on"]
    else:
        space_spec, trained_on = _from_run_folder(file, version)
    space = build_space(space_spec, str(file))
    try:
        if version == 1 and state["spec"]["kind"] == "dynamic":
            spec, network = _convert_format_1(file.parent, space, state, device)
        else:
            spec, network = state["spec"], trained(space, state["spec"], state["state_dict"], device)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise RunError(f"{file}: its weights do not fit its network spec ({err.__class__.__name__}); the file is "
                       f"damaged or was edited") from None
    return ModelFile(space, spec, network, trained_on, file)


def _from_run_folder(file: Path, version: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The space section and training record of an old model file (format 1 or 2), from ``recipe.yaml``
    beside it."""
    recipe = file.parent / "recipe.yaml"
    if not recipe.exists():
        raise RunError(f"{file}: a model file of format {version} (nasden before self-contained model files) "
                       f"needs the recipe.yaml of its run folder beside it; load it from the run folder")
    try:
        raw = yaml.safe_load(recipe.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise RunError(f"{recipe}: cannot read ({err.__class__.__name__})") from None
    check_size(raw, str(recipe))
    if not isinstance(raw, dict) or not isinstance(raw.get("space"), dict):
        raise RecipeError(f"{recipe}: no space section")
    return raw["space"], training_record(from_dict(DataConfig, raw.get("data"), f"{recipe}: data"))


def _convert_format_1(run_dir: Path, space: SearchSpace, state: dict[str, Any],
                      device: torch.device | str) -> tuple[dict[str, Any], nn.Module]:
    """A format-1 dynamic network (E extracted networks) as one shared network, from the run's supernet."""
    old_spec, weights = state["spec"], state["state_dict"]
    context = run_dir / "context.pt"
    if not context.exists():
        raise RunError(f"{run_dir / FILE_NAME} stores one network per candidate (nasden before shared weights) and "
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
            raise RunError(f"{run_dir / FILE_NAME} stores one network per candidate (nasden before shared weights) "
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
