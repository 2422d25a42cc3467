"""One process at a time per run folder: a lock file holding the owner's PID."""
from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from nasden.common.errors import RunError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class RunLock:
    """``with RunLock(run_dir):`` refuses a second process while the first holds the run; a lock whose
    owner died (killed, machine restarted) is taken over."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "run.lock"

    def __enter__(self) -> RunLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(owner):
                    raise RunError(f"{self.path.parent}: in use by process {owner}; wait for it to finish or stop "
                                   f"it first") from None
                self.path.unlink(missing_ok=True)  # its owner is gone
                continue
            except OSError as err:
                raise RunError(f"{self.path.parent}: cannot lock the run folder ({err.strerror})") from None
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise RunError(f"{self.path.parent}: another process took the run's lock at the same time")

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)
