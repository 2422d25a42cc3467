"""MoD-NAS in a CPU hour against BM3D: ``recipes/mod_nas_cpu.yaml`` (search + retrain on Train400) run as a
user runs it, timed, scored on Set12 and BSD68 at σ 25, and its network's speed per image measured beside
BM3D's in the same process (interleaved, the median over ``--images`` BSD68 images, 2 CPU cores).

    python bench/mod_nas_cpu.py [--images 4]          # pip install -e ".[bench]" for BM3D

Results: bench/results/mod_nas_cpu.{json,md}. BM3D's PSNR is the frontier benchmark's (every image of
the same seeded noisy sets, ``python bench/frontier.py run bm3d``).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from frontier import STORE

from nasden.data.image_sets import evaluation_pairs, load_set
from nasden.data.noise import NoiseConfig
from nasden.deploy import model_file as final
from nasden.deploy.inference import denoise
from nasden.deploy.scoring import markdown_table
from nasden.pipeline.recipe import load_recipe
from nasden.pipeline.run import create_run, execute
from record import write_report

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "mod_nas_cpu.yaml"


def seconds_per_image(model: torch.nn.Module, multiple: int, images: int, sigma: float) -> tuple[float, float]:
    """Median seconds per BSD68 image of the network and of BM3D, the two interleaved image by image."""
    import bm3d
    pairs = evaluation_pairs(load_set("bsd68", 1), NoiseConfig(sigma=sigma), seed=0, limit=images)
    network, classical = [], []
    with torch.no_grad():
        denoise(model, pairs[0][1], multiple)  # warm-up
        for _, noisy, _ in pairs:
            start = time.perf_counter()
            denoise(model, noisy, multiple)
            network.append(time.perf_counter() - start)
            start = time.perf_counter()
            bm3d.bm3d(noisy[0].double().numpy(), sigma / 255)
            classical.append(time.perf_counter() - start)
    return statistics.median(network), statistics.median(classical)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="BSD68 images timed (default 4)")
    args = parser.parse_args()
    recipe = load_recipe(RECIPE)
    sigma = float(recipe.data.noise.sigma)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run_dir = create_run(recipe, Path(folder) / "run")
        summaries = execute(run_dir)
        wall = time.perf_counter() - started
        loaded = final.load(run_dir)
        space, model = loaded.space, loaded.network
        network_s, bm3d_s = seconds_per_image(model, space.resolution_multiple, args.images, sigma)
    scores = {row["set"]: row["psnr"] for row in summaries[-1]["sets"]}
    reference = STORE.load("sigma25-b0-bm3d")
    rows = [{"method": "nasden, recipes/mod_nas_cpu.yaml", "Set12": scores.get("set12"),
             "BSD68": scores.get("bsd68"), "FLOPs/pixel": summaries[-1]["sets"][0]["flops_per_pixel"],
             "s per BSD68 image": round(network_s, 4), "search + train + evaluate (s)": round(wall, 1)},
            {"method": "BM3D 4.0.3", "Set12": reference["psnr"]["set12_s25"] if reference else None,
             "BSD68": reference["psnr"]["bsd68_s25"] if reference else None, "FLOPs/pixel": None,
             "s per BSD68 image": round(bm3d_s, 3), "search + train + evaluate (s)": 0}]
    body = (f"σ {sigma:g}, seeded noise (seed 0), every Set12 and BSD68 image. Speed: the median over the first "
            f"{args.images} BSD68 images, network and BM3D interleaved in one process: BM3D / network = "
            f"**{bm3d_s / network_s:.0f}×**. Derived: {summaries[0].get('flops_per_pixel', 0):.4g} FLOPs/pixel.\n\n"
            + markdown_table(rows))
    print(write_report("mod_nas_cpu", {"rows": rows, "speedup_vs_bm3d": bm3d_s / network_s,
                                       "summaries": summaries, "wall_seconds": wall},
                       "MoD-NAS in a CPU hour against BM3D", body))


if __name__ == "__main__":
    main()
