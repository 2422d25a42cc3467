"""Built-in strategies (installed as ``nasden.strategies``); importing registers them."""
from nasden.strategies import class_pruning, darts, evaluate, evolution, gate, sandwich, slimming, train  # noqa: F401
