"""Image-level vs tile-level routing vs the largest candidate, for a dynamic denoiser.

    python bench/tiled_routing.py RUN_DIR [--data ../shared/data/set12] [--sigma blind] [--tile 144]

RUN_DIR is a finished run whose final network is a dynamic denoiser (e.g. recipes/dds_net_quick.yaml).
Noise: AWGN with sigma drawn per image from 0-50 (``--sigma blind``, seed 0) or a fixed sigma.
FLOPs per pixel include the gate and, for tiles, the overlap computed twice. Each routing mode is run
at several cost biases (``DynamicDenoiser.cost_bias``), which trace its PSNR-FLOPs curve; for every
image-routing point the table gives the cheapest tile-routing point with at least its PSNR.
Writes bench/results/tiled_routing.json, .md and .png (or ``--name``.*).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nasden.data import evaluation_pairs, load_set  # noqa: E402
from nasden.dynamic import DynamicDenoiser  # noqa: E402
from nasden.evaluation import markdown_table  # noqa: E402
from nasden.inference import denoise  # noqa: E402
from nasden.metrics import psnr  # noqa: E402
from nasden.noise import NoiseConfig  # noqa: E402
from nasden.run import load_final  # noqa: E402
from record import RESULTS, provenance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/set12"))
    parser.add_argument("--sigma", default="blind")
    parser.add_argument("--tile", type=int, default=144)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--biases", default="-1,-0.5,0,0.5,1,2,4", help="cost biases, comma-separated")
    parser.add_argument("--name", default="tiled_routing", help="results file name (default tiled_routing)")
    args = parser.parse_args()
    space, spec, model = load_final(Path(args.run_dir))
    if not isinstance(model, DynamicDenoiser):
        raise SystemExit(f"{args.run_dir}: the final network is not a dynamic denoiser")
    sigma = [0.0, 50.0] if args.sigma == "blind" else float(args.sigma)
    pairs = evaluation_pairs(load_set(args.data, space.in_channels, "val"), NoiseConfig(sigma=sigma), seed=0)
    multiple = space.resolution_multiple

    def measure(run) -> tuple[float, float]:
        results = [(psnr(out, clean), spent) for (_, noisy, clean) in pairs for out, spent in [run(noisy)]]
        return (round(sum(r[0] for r in results) / len(results), 3), round(sum(r[1] for r in results) / len(results)))

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
    for point in curves["image"]:
        better = [t for t in curves["tile"] if t["psnr"] >= point["psnr"]]
        best = min(better, key=lambda t: t["flops_per_pixel"]) if better else None
        rows.append({"cost bias": point["cost_bias"], "image routing dB": point["psnr"],
                     "image routing FLOPs/px": point["flops_per_pixel"],
                     "cheapest tile routing ≥ that PSNR": "none" if best is None else
                     f"{best['psnr']} dB at {best['flops_per_pixel']} (bias {best['cost_bias']})",
                     "tile / image FLOPs": None if best is None else
                     round(best["flops_per_pixel"] / point["flops_per_pixel"], 3)})
    result = {**provenance(), "run": str(args.run_dir), "data": args.data, "sigma": sigma, "images": len(pairs),
              "tile": args.tile, "overlap": args.overlap, "candidates_flops_per_pixel": model.flops,
              "gate_flops_per_pixel": model.gate_flops, "largest": {"psnr": largest[0], "flops_per_pixel": largest[1]},
              "curves": curves, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(
        f"# Tile vs image routing\n\n`{result['command']}` — {result['date']}, {result['git_revision']}\n\n"
        f"{len(pairs)} images from {args.data}, AWGN sigma {sigma}; tiles {args.tile} px, overlap {args.overlap}. "
        f"Largest candidate alone: {largest[0]} dB at {largest[1]} FLOPs/pixel.\n\n{markdown_table(rows)}")
    figure, axes = plt.subplots(figsize=(6, 4))
    for route, points in curves.items():
        ordered = sorted(points, key=lambda t: t["flops_per_pixel"])
        axes.plot([t["flops_per_pixel"] / 1e3 for t in ordered], [t["psnr"] for t in ordered], "o-",
                  label=f"{route} routing")
    axes.plot([largest[1] / 1e3], [largest[0]], "k*", markersize=10, label="largest candidate")
    axes.set(xlabel="FLOPs per pixel (thousands)", ylabel="PSNR (dB)", title=f"{Path(args.data).name}, sigma {sigma}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(RESULTS / f"{args.name}.png", dpi=100)
    print(markdown_table(rows))


def _spent(result) -> tuple:
    return result.image, result.flops_per_pixel


if __name__ == "__main__":
    main()
