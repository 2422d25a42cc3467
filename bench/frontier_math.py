"""The frontier benchmark's arithmetic and bookkeeping, kept apart so tests can check it by hand.

* the static frontier: the best PSNR any static baseline reaches at or below each FLOPs, read
  between its points linearly in log-FLOPs (flat beyond the last: a cheaper network reaches it);
* the distance in dB of a method's point to that frontier, and to the best random-search point;
* random search's equal-compute K;
* the probe runs' steps, so that their difference holds every kind of step a stage repeats;
* entry files: one JSON per entry (and training seed), skipped on a rerun unless forced;
* the spread of entries run with several training seeds.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

Point = tuple[float, float]  # (FLOPs/pixel, PSNR dB)


def frontier(points: Sequence[Point]) -> list[Point]:
    """The upper-left hull: the points no other point beats with fewer or equal FLOPs, by FLOPs."""
    best: list[Point] = []
    for flops, psnr in sorted(points, key=lambda p: (p[0], -p[1])):
        if not best or psnr > best[-1][1]:
            best.append((flops, psnr))
    return best


def frontier_psnr(line: Sequence[Point], flops: float) -> float | None:
    """The best static PSNR at ``flops``: linear in log-FLOPs between the frontier's points and, beyond its
    last point, that point's PSNR (a cheaper static network reaches it); ``None`` below its first point
    (no static network that cheap was measured: no honest comparison)."""
    if not line or flops < line[0][0]:
        return None
    if flops >= line[-1][0]:
        return line[-1][1]
    for (f0, p0), (f1, p1) in zip(line, line[1:]):
        if f0 <= flops <= f1:
            t = (math.log(flops) - math.log(f0)) / (math.log(f1) - math.log(f0))
            return p0 + t * (p1 - p0)
    raise AssertionError("unreachable: the frontier is sorted by FLOPs")


def gap_to_frontier(line: Sequence[Point], point: Point) -> float | None:
    """``point``'s PSNR minus the frontier's at its FLOPs (dB; positive: the point beats hand design)."""
    reference = frontier_psnr(line, point[0])
    return None if reference is None else point[1] - reference


def equal_compute_k(method_search_flops: float, screen_flops: float) -> int:
    """How many architectures random search screens with the compute the method spent searching, about
    ``screen_flops`` each: the nearest whole number, at least 1 (each is then screened with an equal part of the
    method's search compute, so that the two spend the same)."""
    if screen_flops <= 0:
        raise ValueError(f"screen_flops: expected > 0, got {screen_flops}")
    return max(1, round(method_search_flops / screen_flops))


def probe_span(span: int, period: int = 1) -> int:
    """How many more steps a stage's longer probe run takes than its shorter: at least ``span``, in whole ``period``s
    (a sandwich with ``largest_every: k`` repeats every k steps: a difference of another length can hold more or fewer
    of its steps of the largest than their share)."""
    if span < 1 or period < 1:
        raise ValueError(f"probe_span: expected span and period >= 1, got {span}, {period}")
    return period * math.ceil(span / period)


class EntryStore:
    """Entry results as ``<folder>/<key>.json``; a finished entry is not run again unless forced."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        return json.loads(path.read_text()) if path.exists() else None

    def save(self, key: str, result: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(path)
        return path

    def run(self, key: str, make: Callable[[], dict[str, Any]], force: bool = False) -> dict[str, Any]:
        """The stored result of ``key``, or ``make()``'s, saved as soon as it is made."""
        stored = None if force else self.load(key)
        if stored is not None:
            return stored
        result = make()
        self.save(key, result)
        return result

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))]


def entry_key(setting: str, budget: float, name: str, seed: int = 0) -> str:
    """An entry result's file name; seed 0 (every entry's) is left out of it."""
    return f"{setting}-b{budget:g}-{name}" + (f"-s{seed}" if seed else "")


def seed_rows(results: list[dict[str, Any]], headline: Callable[[dict[str, Any]], float],
              budget_flops: float) -> list[dict[str, Any]]:
    """Entries run with several training seeds: ``headline`` per seed, at its FLOPs/pixel and with the share of
    its budget (``budget`` × ``budget_flops``) it spent, and the spread (max − min)."""
    runs: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if r["budget"]:
            runs.setdefault((r["setting"], r["budget"], r["entry"]), []).append(r)
    rows = []
    for (setting, budget, entry), group in sorted(runs.items()):
        if len(group) < 2:
            continue
        group.sort(key=lambda r: r.get("seed", 0))
        psnr = [headline(r) for r in group]
        seeds = [f"seed {r.get('seed', 0)}" for r in group]
        rows.append({"setting": setting, "budget": budget, "entry": entry,
                     **{s: f"{p:.3f} @ {r['flops_per_pixel']:.3g} ({r['train_flops'] / (budget * budget_flops):.2f})"
                        for s, r, p in zip(seeds, group, psnr)},
                     "spread (dB)": round(max(psnr) - min(psnr), 3),
                     "machines": "; ".join(f"{s}: {r['device']} of {r['machine']}" for s, r in zip(seeds, group))})
    return rows
