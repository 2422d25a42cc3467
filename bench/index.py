"""The index of bench/results/: every result file with the command, date and revision that wrote it and what it
holds, written to ``bench/results/README.md``.

    python bench/index.py            # write the index
    python bench/index.py --check    # exit 1 if the committed index differs from what this writes
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
INDEX = RESULTS / "README.md"
HEADER = """# Benchmark results

Written by `python bench/index.py` from the files themselves: one row per result, with the command that
produced it (run from `bench/`), its date and git revision, and what it holds. What the figures mean is in
[docs/results.md](../../docs/results.md).

| result | files | command | date | revision | holds |
|---|---|---|---|---|---|
"""


def _provenance(files: list[Path]) -> dict:
    for path in files:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "command" in data:
                return data
    for path in files:
        if path.suffix == ".md":
            match = re.search(r"^`([^`]+)` — (\S+), (\S+),", path.read_text(), re.M)
            if match:
                return {"command": match.group(1), "date": match.group(2), "git_revision": match.group(3)}
    return {}


def _holds(files: list[Path], data: dict) -> str:
    """The result's title, or for a frontier entry its PSNR and cost."""
    for path in files:
        if path.suffix == ".md":
            title = next((line[2:] for line in path.read_text().splitlines() if line.startswith("# ")), None)
            if title:
                return title
    if isinstance(data.get("psnr"), (int, float)):
        flops = data.get("flops_per_pixel")
        cost = f" at {flops / 1e3:.1f}k FLOPs/pixel" if isinstance(flops, (int, float)) else ""
        return f"{data.get('entry', files[0].stem)}, {data.get('setting', '')}: {data['psnr']:.2f} dB{cost}"
    figures = [key for key in data if key not in ("command", "date", "git_revision", "machine")][:4]
    return "figures: " + ", ".join(figures) if figures else "a figure"


def index() -> str:
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(RESULTS.rglob("*")):
        if path.is_file() and path != INDEX:
            groups[str(path.relative_to(RESULTS).with_suffix(""))].append(path)
    rows = []
    for name, files in groups.items():
        data = _provenance(files)
        links = ", ".join(f"[{p.suffix[1:]}]({p.relative_to(RESULTS).as_posix()})" for p in files)
        command = data.get("command", "").replace("|", "\\|")
        rows.append(f"| {name} | {links} | `{command}` | {data.get('date', '')[:10]} | {data.get('git_revision', '')} "
                    f"| {_holds(files, data).replace('|', '/')} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed index is out of date")
    args = parser.parse_args()
    text = index()
    if args.check:
        if not INDEX.exists() or INDEX.read_text() != text:
            print(f"{INDEX} is out of date: python bench/index.py", file=sys.stderr)
            return 1
        return 0
    INDEX.write_text(text)
    print(f"wrote {INDEX} ({text.count(chr(10)) - HEADER.count(chr(10))} results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
