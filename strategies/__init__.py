"""Built-in strategies (installed as ``nasden.strategies``); importing registers them."""
