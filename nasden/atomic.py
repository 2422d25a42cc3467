"""Atomic file writes: write a temporary file beside the target, then rename it over the target."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from nasden.distributed import is_main
from nasden.errors import WriteError

TEMP_PREFIX = ".nasden-tmp-"  # names no file of nasden's or a user's starts with


def remove_orphans(folder: Path) -> int:
    """Delete the temporary files a kill during :func:`atomic_write` left under ``folder``; how many."""
    orphans = [p for p in folder.rglob(f"{TEMP_PREFIX}*") if p.is_file()]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A kill at any moment leaves either the old file or the new one, never half of one. A folder that
    cannot be written (read-only, disk full, file-size limit) is a :class:`WriteError` naming ``path``,
    never the temporary file. Under torchrun only rank 0 writes; on the other processes this does nothing.
    """
    if not is_main():
        return
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=suffix)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        raise WriteError(f"{path}: cannot write ({err.strerror or err.__class__.__name__})") from None
    except RuntimeError as err:
        if "PytorchStreamWriter" not in str(err):  # torch.save's own word for a failed write
            raise
        raise WriteError(f"{path}: cannot write (the disk may be full)") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
