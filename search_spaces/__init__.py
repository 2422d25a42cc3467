"""Built-in search spaces (installed as ``nasden.search_spaces``); importing registers them."""
from nasden.search_spaces import backbones, graph, mod_unet, nm_branches, slimmable, toy  # noqa: F401
