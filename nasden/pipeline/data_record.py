"""What data a run was made with, so that a resume reads the same images.

At creation a run's data folders given as paths are made absolute (a resume from another working folder
then finds them), and ``data.json`` records each folder's image files (names and sizes, hashed). A resume
whose folder holds other images than the record is refused. Named datasets are checked by their manifests
and ``builtin`` ships with the package, so neither is recorded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from nasden.common.errors import RunError
from nasden.common.storage import save_json
from nasden.data.image_sets import DataConfig
from nasden.data.images import EXTENSIONS

RECORD = "data.json"
KEYS = ("train", "val")


def absolute_folders(data: DataConfig) -> DataConfig:
    """``data`` with the folders it names by path made absolute (names and ``builtin`` unchanged)."""
    changes = {}
    for key in KEYS:
        path = Path(getattr(data, key)).expanduser()
        if path.is_dir():  # a path; nasden reads an existing folder before a dataset name
            changes[key] = str(path.resolve())
    return dataclasses.replace(data, **changes)


def fingerprint(folder: Path) -> dict[str, Any]:
    """The image files under ``folder`` (its ``noisy/`` and ``clean/`` too): how many, and a hash of their
    names and sizes."""
    files = sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*")
                   if p.suffix.lower() in EXTENSIONS and p.is_file())
    digest = hashlib.sha256("".join(f"{name}\t{size}\n" for name, size in files).encode()).hexdigest()
    return {"files": len(files), "sha256": digest}


def _folders(data: DataConfig) -> dict[str, Path]:
    return {key: Path(getattr(data, key)) for key in KEYS if Path(getattr(data, key)).is_absolute()}


def record(data: DataConfig, run_dir: Path) -> None:
    """Write ``data.json``: the fingerprint of every folder ``data`` (already absolute) names by path."""
    save_json({key: {"path": str(folder), **fingerprint(folder)} for key, folder in _folders(data).items()},
              run_dir / RECORD)


def check(data: DataConfig, run_dir: Path) -> None:
    """Refuse to go on when a recorded folder is gone or holds other images than when the run was created."""
    path = run_dir / RECORD
    if not path.exists():  # a run made before the record existed
        return
    recorded = json.loads(path.read_text())
    for key, folder in _folders(data).items():
        then = recorded.get(key)
        if then is None:
            continue
        if not folder.is_dir():
            raise RunError(f"data.{key}: {folder} is gone; the run was made with its {then['files']} images")
        now = fingerprint(folder)
        if now["sha256"] != then["sha256"]:
            raise RunError(f"data.{key}: {folder} holds other images than when the run was created ({then['files']} "
                           f"files then, {now['files']} now); restore them, or start a new run")
