"""Safe file writes: a target is checked before any work (no write nobody asked for), then written to a
temporary file beside it and renamed over it (no half-written file)."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from nasden.common.distributed import is_main
from nasden.common.errors import WriteError

TEMP_PREFIX = ".nasden-tmp-"  # names no file of nasden's or a user's starts with


def remove_orphans(folder: Path) -> int:
    """Delete the temporary files a kill during :func:`atomic_write` left under ``folder``; how many."""
    orphans = [p for p in folder.rglob(f"{TEMP_PREFIX}*") if p.is_file()]
    for path in orphans:
        path.unlink(missing_ok=True)
    return len(orphans)


def _kind(path: Path) -> str | None:
    """What is at ``path`` when it is not a regular file ("a folder", "a FIFO", ...); None for a regular file
    or a missing path. A symbolic link counts as itself, whatever it points at."""
    try:
        mode = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # missing, or under a file (the parent check names it)
        return None
    except OSError as err:
        return f"unreadable ({err.strerror})"
    kinds = [(stat.S_ISREG, None), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket")]
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def _refuse_special(path: Path) -> None:
    kind = _kind(path)
    if kind is not None:
        raise WriteError(f"{path}: is {kind}; nasden writes only to a new path or a regular file")


def check_target(path: Path, overwrite: bool = False) -> None:
    """Refuse a write to ``path`` that nobody asked for, before anything is computed: a folder, FIFO, device,
    socket or symbolic link there is never replaced; a regular file only with ``overwrite`` (``--overwrite``);
    and the nearest existing ancestor must be a folder."""
    _refuse_special(path)
    if path.exists() and not overwrite:
        raise WriteError(f"{path}: exists; pass --overwrite to replace it")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise WriteError(f"{path}: cannot be created, {parent} is a file")
            return


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None], suffix: str = "") -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A kill at any moment leaves either the old file or the new one, never half of one. A folder that
    cannot be written (read-only, disk full, file-size limit) is a :class:`WriteError` naming ``path``,
    never the temporary file. Anything but a regular file at ``path`` (a folder, FIFO, device, link) is refused
    and left as it is. Under torchrun only rank 0 writes; on the other processes this does nothing.
    """
    if not is_main():
        return
    _refuse_special(path)
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
