"""Which file each input of ``nasden denoise`` is written to, checked whole before anything is written.

Rules: an input is never overwritten; two inputs never share an output (``a.jpg`` and ``a.png`` both
meaning ``a.png``); an existing output is replaced only with ``overwrite``, and only if it is a regular
file (never a folder, FIFO, device or link). Every violation is found
before the first image is denoised, so a refused run writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nasden.common.atomic import check_target
from nasden.data.images import EXTENSIONS, ImageError, list_images


@dataclass(frozen=True)
class Job:
    """One input image, the file its denoised version goes to and, optionally, its route map."""

    source: Path
    output: Path
    route_map: Path | None = None

    def written(self) -> list[Path]:
        return [self.output] + ([self.route_map] if self.route_map else [])


def plan_outputs(source: Path, target: Path, route_map: Path | None = None, overwrite: bool = False) -> list[Job]:
    """The jobs for ``nasden denoise SOURCE TARGET [--route-map ROUTE_MAP]``; an :class:`ImageError` names
    the first problem with the whole plan."""
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise ImageError(f"{target}: is a file; the output of a folder of images must be a folder")
        sources = list_images(source)
        if not sources:
            raise ImageError(f"{source}: no image files")
        jobs = [Job(p, target / f"{p.stem}.png", route_map / f"{p.stem}_route.png" if route_map else None)
                for p in sources]
    elif source.exists():
        if target.is_dir() or target.suffix.lower() not in EXTENSIONS:
            target = target / f"{source.stem}.png"
        jobs = [Job(source, target, route_map)]
    else:
        raise ImageError(f"{source}: no such file or folder")
    _check(jobs, overwrite)
    return jobs


def _check(jobs: list[Job], overwrite: bool) -> None:
    inputs = {job.source.resolve(): job.source for job in jobs}
    writers: dict[Path, Path] = {}
    existing = []
    for job in jobs:
        for path in job.written():
            key = path.resolve()
            if key in inputs:
                raise ImageError(f"{path}: would overwrite the input {inputs[key]}; choose another output")
            if key in writers:
                raise ImageError(f"{writers[key]} and {job.source} would both be written to {path}; rename one "
                                 f"or denoise them separately")
            writers[key] = job.source
            check_target(path, overwrite=True)  # never a folder, FIFO, device or link; a creatable path
            if path.exists():
                existing.append(path)
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ImageError(f"{existing[0]}: exists{more}; pass --overwrite to replace")

