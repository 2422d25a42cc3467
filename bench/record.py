"""Writing benchmark results with the command, date, machine and git revision that produced them."""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def git_revision() -> str:
    """The checkout's short revision (``-dirty`` with uncommitted changes to tracked files), or
    ``$NASDEN_GIT_REVISION`` where set: a copy run on another machine (a lent GPU's) whose own .git may be stale."""
    if os.environ.get("NASDEN_GIT_REVISION"):
        return os.environ["NASDEN_GIT_REVISION"]
    try:
        revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                  cwd=RESULTS.parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=RESULTS.parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    return {
        "command": "python " + " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} threads"
                   + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
    }


def write_json(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({**provenance(), **figures}, indent=2) + "\n")
    return path


def write_report(name: str, figures: dict[str, Any], title: str, body: str) -> str:
    """Write ``name.json`` (provenance + ``figures``) and ``name.md`` (title, provenance line, ``body``);
    returns the markdown."""
    meta = provenance()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({**meta, **figures}, indent=2) + "\n")
    text = (f"# {title}\n\n`{meta['command']}` — {meta['date']}, {meta['git_revision']}, {meta['machine']}\n\n"
            + body)
    (RESULTS / f"{name}.md").write_text(text)
    return text
