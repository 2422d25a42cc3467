"""Image-level vs tile-level routing vs the largest candidate, for a dynamic denoiser.

    python bench/tiled_routing.py RUN_DIR [--data ../shared/data/set12] [--sigma blind] [--tile 64]

RUN_DIR is a finished run whose final network is a dynamic denoiser (e.g. recipes/dds_net_tiles.yaml).
Noise: AWGN with sigma drawn per image from 0-50 (``--sigma blind``, seed 0) or a fixed sigma.
Image routing runs each whole image on one candidate; tile routing cuts it into ``--tile`` pixel
tiles (``--overlap`` shared) and lets the gate pick per tile. FLOPs per pixel include the gate and,
for tiles, the overlap computed twice. Each mode is run at several cost biases
(``DynamicDenoiser.cost_bias``), which trace its PSNR-FLOPs curve; for every tile-routing point the
table gives the FLOPs image routing needs for the same PSNR (between its two neighbouring points).
Writes bench/results/tiled_routing.json, .md and .png (or ``--name``.*).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nasden.core.specs import is_dynamic
from nasden.data.image_sets import evaluation_pairs, load_set
from nasden.data.noise import NoiseConfig
from nasden.data.quality import psnr
from nasden.deploy.inference import denoise
from nasden.deploy.model_file import load as load_final
from nasden.deploy.scoring import markdown_table
from nasden.pipeline.plots import psnr_flops_figure, save_png
from record import RESULTS, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/set12"))
    parser.add_argument("--sigma", default="blind")
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=8)
    parser.add_argument("--biases", default="0,0.2,0.4,0.6,0.8,1,1.2,1.6,2.4", help="cost biases, comma-separated")
    parser.add_argument("--name", default="tiled_routing", help="results file name (default tiled_routing)")
    args = parser.parse_args()
    loaded = load_final(Path(args.run_dir))
    space, model = loaded.space, loaded.network
    if not is_dynamic(model):
        raise SystemExit(f"{args.run_dir}: the final network is not a dynamic denoiser")
    sigma = [0.0, 50.0] if args.sigma == "blind" else float(args.sigma)
    pairs = evaluation_pairs(load_set(args.data, space.in_channels, "val"), NoiseConfig(sigma=sigma), seed=0)
    multiple = space.resolution_multiple

    def measure(run) -> tuple[float, float]:
        """Mean PSNR and FLOPs/pixel of ``run(noisy) -> (denoised, FLOPs/pixel)`` over the images."""
        scores, spent = [], []
        for _, noisy, clean in pairs:
            out, flops = run(noisy)
            scores.append(psnr(out, clean))
            spent.append(flops)
        return round(sum(scores) / len(scores), 3), round(sum(spent) / len(spent))

    largest = measure(lambda noisy: (denoise(model.candidates[-1], noisy, multiple).image, model.flops[-1]))
    curves: dict[str, list[dict]] = {"image": [], "tile": []}
    for bias in [float(b) for b in args.biases.split(",")]:
        model.cost_bias = bias
        for route in curves:
            tile = args.tile if route == "tile" else None
            value, flops = measure(lambda noisy: _spent(denoise(model, noisy, multiple, tile, args.overlap, route)))
            curves[route].append({"cost_bias": bias, "psnr": value, "flops_per_pixel": flops})
            print(route, curves[route][-1], flush=True)
    rows = []
    for point in curves["tile"]:
        matched = flops_to_reach(point["psnr"], curves["image"])
        rows.append({"cost bias": point["cost_bias"], "tile routing dB": point["psnr"],
                     "tile routing FLOPs/px": point["flops_per_pixel"],
                     "image routing FLOPs/px at that PSNR": "out of reach" if matched is None else round(matched),
                     "tile / image FLOPs": None if matched is None else round(point["flops_per_pixel"] / matched, 3)})
    figures = {"run": str(args.run_dir), "data": args.data, "sigma": sigma, "images": len(pairs), "tile": args.tile,
               "overlap": args.overlap, "candidates_flops_per_pixel": model.flops,
               "gate_flops_per_pixel": model.gate_flops,
               "largest": {"psnr": largest[0], "flops_per_pixel": largest[1]}, "curves": curves, "rows": rows}
    write_report(args.name, figures, "Tile vs image routing",
                 f"{len(pairs)} images from {args.data}, AWGN sigma {sigma}; tiles {args.tile} px, overlap "
                 f"{args.overlap}. Largest candidate alone: {largest[0]} dB at {largest[1]} FLOPs/pixel.\n\n"
                 f"{markdown_table(rows)}")
    series = {f"{route} routing": [(t["flops_per_pixel"], t["psnr"]) for t in points]
              for route, points in curves.items()}
    series["largest candidate"] = [largest[::-1]]
    save_png(psnr_flops_figure(series, f"{Path(args.data).name}, sigma {sigma}"), RESULTS / f"{args.name}.png")
    print(markdown_table(rows))


def flops_to_reach(target: float, points: list[dict]) -> float | None:
    """FLOPs/pixel at which a routing curve reaches ``target`` dB: linear between its two neighbouring
    Pareto points (running a share of the images at each bias gets there), None above its best point."""
    front, best = [], float("-inf")
    for point in sorted(points, key=lambda p: (p["flops_per_pixel"], -p["psnr"])):
        if point["psnr"] > best:
            front.append(point)
            best = point["psnr"]
    if target > best:
        return None
    above = next(i for i, point in enumerate(front) if target <= point["psnr"])
    if above == 0:
        return front[0]["flops_per_pixel"]
    low, high = front[above - 1], front[above]
    share = (target - low["psnr"]) / (high["psnr"] - low["psnr"])
    return low["flops_per_pixel"] + share * (high["flops_per_pixel"] - low["flops_per_pixel"])


def _spent(result) -> tuple:
    return result.image, result.flops_per_pixel


if __name__ == "__main__":
    main()
