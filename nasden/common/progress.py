"""Progress bars for long work (training stages, tiled denoising), silent where nobody watches."""
from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress(total: int, initial: int = 0, desc: str = "", quiet: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar, silent with ``quiet`` or when stderr is not a terminal."""
    disable = quiet or not sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, leave=False, **kwargs)
