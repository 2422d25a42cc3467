"""Built-in strategies (installed as ``nasden.strategies``); importing registers them."""
from nasden.strategies import evaluate, train  # noqa: F401
