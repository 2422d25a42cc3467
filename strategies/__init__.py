"""Built-in strategies (installed as ``nasden.strategies``); importing registers them."""
from nasden.strategies import evaluate, sandwich, slimming, train  # noqa: F401
