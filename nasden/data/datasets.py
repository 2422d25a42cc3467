"""Named datasets (``train400``, ``set12``, ``bsd68``, ``cbsd68``, ``kodak24``, ``mcmaster``, ``polyu``): a
recipe writes ``data.train: train400`` and nasden finds the images.

Each name has a manifest in the package (``nasden/data/manifests/<name>.json``): the upstream repository and
the commit it is pinned to, the folder there, every file's name, upstream name, size and SHA-256, the
licence and the citation. A name resolves, in order, to

1. ``$NASDEN_DATA/<name>`` (or one of the manifest's ``aliases`` there, e.g. ``real_polyu``), checked by
   file names and sizes;
2. the user cache, ``$NASDEN_CACHE/<name>`` (default ``~/.cache/nasden/<name>``);
3. a download into the cache: files go to ``<cache>/.nasden-tmp-<name>/``, each is checked against its
   SHA-256 as it arrives, and only when all are there is the folder renamed into place. An interrupted
   download keeps the files it checked and fetches only the rest next time; a file whose checksum
   does not match is deleted (nothing that was good is) and named in the error.

``nasden data get NAME --from DIR`` copies (and checks) a folder instead; ``nasden data ls`` lists the
names, their size and licence, and where each is found.

A manifest may also name splits of its images (``polyu``: scene-disjoint ``train``, ``val``, ``test``); a recipe
uses one as ``polyu:train``.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from nasden.common.errors import NasdenError

DATA_ENV = "NASDEN_DATA"
CACHE_ENV = "NASDEN_CACHE"
MANIFESTS = Path(__file__).parent / "manifests"
RAW_URL = "https://raw.githubusercontent.com/{repository}/{commit}/{path}/{file}"
CHUNK = 1 << 16


class DatasetError(NasdenError, ValueError):
    """A dataset that cannot be found, fetched or checked; the message says what to do."""


@dataclass(frozen=True)
class DataFile:
    """One file: its name in the dataset folder (may be in a sub-folder), its name upstream, size, SHA-256."""

    name: str
    upstream: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A dataset pinned to an upstream commit, file by file."""

    name: str
    description: str
    repository: str  # owner/name on GitHub
    commit: str
    path: str  # the folder in the repository
    licence: str
    citation: str
    files: tuple[DataFile, ...]
    aliases: tuple[str, ...] = ()
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)  # split name -> image (pair) names
    split_rule: str = ""  # how the splits were made (e.g. scene-disjoint)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def url(self, file: DataFile, base: str | None = None) -> str:
        """Where ``file`` is downloaded from (``base``: a mirror with the upstream layout, for tests)."""
        if base:
            return f"{base.rstrip('/')}/{file.upstream}"
        return RAW_URL.format(repository=self.repository, commit=self.commit, path=self.path, file=file.upstream)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        return cls(**{**raw, "files": tuple(DataFile(**f) for f in raw["files"]),
                      "aliases": tuple(raw.get("aliases", ())),
                      "splits": {k: tuple(v) for k, v in raw.get("splits", {}).items()}})


def names() -> list[str]:
    """The dataset names nasden has manifests for."""
    return sorted(p.stem for p in MANIFESTS.glob("*.json"))


def manifest(name: str) -> Manifest:
    path = MANIFESTS / f"{name}.json"
    if not path.is_file():
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(names())}")
    return Manifest.from_json(path.read_text())


def split_source(source: str) -> tuple[str, str | None]:
    """``name:split`` of a dataset with that split -> (name, split); anything else -> (source, None)."""
    name, colon, split = source.partition(":")
    if not colon or name not in names():
        return source, None
    known = manifest(name).splits
    if split not in known:
        offered = ", ".join(f"{name}:{k}" for k in known) or "none"
        raise DatasetError(f"dataset {name!r} has no split {split!r}; its splits: {offered}")
    return name, split


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "nasden").expanduser()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _complete(folder: Path, data: Manifest) -> bool:
    """Every file of the manifest is in ``folder`` with its size (a quick check; downloads check SHA-256)."""
    return folder.is_dir() and all((folder / f.name).is_file() and (folder / f.name).stat().st_size == f.size
                                   for f in data.files)


def find(name: str) -> Path | None:
    """Where a complete copy of dataset ``name`` is, without downloading: ``$NASDEN_DATA`` or the cache."""
    data = manifest(name)
    root = os.environ.get(DATA_ENV)
    places = [Path(root).expanduser() / n for n in (name, *data.aliases)] if root else []
    places.append(cache_root() / name)
    return next((place for place in places if _complete(place, data)), None)


def locate(name: str, base_url: str | None = None, overwrite: bool = False) -> Path:
    """The folder of dataset ``name``: found (see :func:`find`) or downloaded into the cache (replacing an
    incomplete copy there only with ``overwrite``)."""
    return find(name) or download(manifest(name), cache_root(), base_url, overwrite=overwrite)


def _fill(data: Manifest, target: Path, fetch: Callable[[DataFile, Path], None], overwrite: bool = False) -> Path:
    """Fill ``<root>/.nasden-tmp-<name>`` file by file with ``fetch`` (checked as each arrives), then rename it
    to ``target``; files already there and good are kept (an interrupted fill resumes). A ``target`` that
    already holds the dataset is kept as it is; any other folder there is replaced only with ``overwrite``,
    and anything else there never."""
    if target.is_dir() and not target.is_symlink():
        if _complete(target, data) and all(sha256(target / f.name) == f.sha256 for f in data.files):
            return target
        if not overwrite:
            raise DatasetError(f"{target}: exists and is not a complete copy of {data.name}; nothing was written. "
                               f"Replace it with `nasden data get {data.name} --overwrite`")
    elif target.exists() or target.is_symlink():
        raise DatasetError(f"{target}: exists and is not a folder; nothing was written")
    partial = target.parent / f".nasden-tmp-{data.name}"
    for file in data.files:
        path = partial / file.name
        if path.is_file() and path.stat().st_size == file.size and sha256(path) == file.sha256:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        incoming = path.with_name(path.name + ".part")
        fetch(file, incoming)
        digest = sha256(incoming)
        if digest != file.sha256:
            incoming.unlink()
            raise DatasetError(f"{data.name}: {file.name} arrived with SHA-256 {digest[:12]}…, expected "
                               f"{file.sha256[:12]}…; it was deleted (the {len(list(_files(partial)))} good files "
                               f"are kept in {partial}); try again")
        incoming.replace(path)
    if target.exists():
        shutil.rmtree(target)
    partial.replace(target)
    return target


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".part"))


def download(data: Manifest, root: Path, base_url: str | None = None, timeout: float = 30,
             overwrite: bool = False) -> Path:
    """Download ``data`` into ``root/<name>`` (see the module docstring)."""

    def fetch(file: DataFile, incoming: Path) -> None:
        url = data.url(file, base_url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, incoming.open("wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", None) or err.__class__.__name__
            raise DatasetError(
                f"{data.name}: cannot download {url} ({reason}); copy it from a folder with `nasden data get "
                f"{data.name} --from DIR`, or set ${DATA_ENV} to a folder that holds {data.name}/") from None

    root.mkdir(parents=True, exist_ok=True)
    return _fill(data, root / data.name, fetch, overwrite)


def copy_from(data: Manifest, source: Path, root: Path, overwrite: bool = False) -> Path:
    """Copy ``data`` from the folder ``source`` (dataset or upstream file names) into ``root/<name>``,
    checking every file."""
    if not source.is_dir():
        raise DatasetError(f"{source}: not a folder")

    def fetch(file: DataFile, incoming: Path) -> None:
        found = next((source / n for n in (file.name, file.upstream) if (source / n).is_file()), None)
        if found is None:
            raise DatasetError(f"{data.name}: {source} has no {file.name} (upstream name {file.upstream})")
        shutil.copyfile(found, incoming)

    root.mkdir(parents=True, exist_ok=True)
    return _fill(data, root / data.name, fetch, overwrite)


def manifest_for(folder: Path, name: str, upstream: Callable[[str], str] = lambda n: n, **fields: Any) -> Manifest:
    """The manifest of the images in ``folder`` (``upstream`` maps a file's name here to its name upstream);
    ``fields``: description, repository, commit, path, licence, citation."""
    files = tuple(DataFile(p.relative_to(folder).as_posix(), upstream(p.relative_to(folder).as_posix()),
                           p.stat().st_size, sha256(p)) for p in sorted(_files(folder)))
    return Manifest(name=name, files=files, **fields)
