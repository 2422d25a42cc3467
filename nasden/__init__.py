"""nasden: neural-architecture search for image denoising.

Use a trained network: :func:`load` a model file (or run folder) into a :class:`Denoiser` and call
``denoise`` on an image, or :func:`denoise_file` on files. Build on the four concepts of a search: spaces,
choices and architectures (:mod:`nasden.core.space`), the weight-sharing supernet (:mod:`nasden.core.supernet`),
static networks (:mod:`nasden.core.extract`) and their cost (:mod:`nasden.core.cost`).

The package is layered, lowest first: ``common`` (errors, registries, safe files), ``core`` (spaces, ops,
supernet, cost) and ``data`` (images, noise, datasets), ``deploy`` (model files, denoising, export),
``pipeline`` (recipes, runs, training); the CLI on top. ``pyproject.toml``'s import-linter contract keeps it so.
"""
from nasden.common.registry import register_gate, register_space, register_strategy
from nasden.core.cost import Cost, cost, measure_latency
from nasden.core.extract import StaticNet, extract
from nasden.core.space import Architecture, Choice, SearchSpace, SpaceError, arch_hash
from nasden.core.supernet import Supernet, recalibrate_bn
from nasden.deploy.denoiser import Denoiser, denoise_file, load

__version__ = "0.1.0"

__all__ = ["Architecture", "Choice", "Cost", "Denoiser", "SearchSpace", "SpaceError", "StaticNet", "Supernet",
           "arch_hash", "cost", "denoise_file", "extract", "load", "measure_latency", "recalibrate_bn",
           "register_gate", "register_space", "register_strategy"]
