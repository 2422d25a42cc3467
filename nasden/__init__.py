"""nasden: neural-architecture search for image denoising.

The four concepts live in four places: :mod:`nasden.space` (spaces, choices, architectures),
:mod:`nasden.supernet` (the weight-sharing module), :mod:`nasden.extract` (static networks and
export) and :mod:`nasden.cost` (FLOPs, parameters, latency).
"""
from nasden.cost import Cost, cost, measure_latency
from nasden.extract import StaticNet, extract
from nasden.registry import register_space, register_strategy
from nasden.space import Architecture, Choice, SearchSpace, SpaceError, arch_hash
from nasden.supernet import Supernet, recalibrate_bn

__version__ = "0.1.0"

__all__ = ["Architecture", "Choice", "Cost", "SearchSpace", "SpaceError", "StaticNet", "Supernet", "arch_hash",
           "cost", "extract", "measure_latency", "recalibrate_bn", "register_space", "register_strategy"]
