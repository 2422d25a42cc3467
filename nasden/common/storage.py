"""Run files on disk: atomic torch and JSON saves, and checkpoint loads that run no code."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from nasden.common.atomic import atomic_write
from nasden.common.errors import RunError


def save_torch(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def load_torch(path: Path) -> Any:
    """Load a checkpoint without running code from it; a truncated or foreign file is a :class:`RunError`
    (torch's own text, which advises ``weights_only=False``, is not passed on)."""
    try:
        with warnings.catch_warnings():  # torch's warnings about unsafe loading advise what nasden must not do
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - unpickling, zip and storage errors of every kind
        raise RunError(f"{path}: not a checkpoint nasden can read safely ({err.__class__.__name__}); it may be "
                       f"truncated or not written by nasden") from None
