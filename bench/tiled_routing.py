"""Image-level vs tile-level routing vs the largest candidate, for a dynamic denoiser.

    python bench/tiled_routing.py RUN_DIR [--data ../shared/data/set12] [--sigma blind] [--tile 128]

RUN_DIR is a finished run whose final network is a dynamic denoiser (e.g. recipes/dds_net_quick.yaml).
Noise: AWGN with sigma drawn per image from 0-50 (``--sigma blind``, seed 0) or a fixed sigma.
FLOPs per pixel include the gate and, for tiles, the overlap computed twice.
Writes bench/results/tiled_routing.json and .md (or ``--name``.json and .md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasden.data import evaluation_pairs, load_set
from nasden.dynamic import DynamicDenoiser
from nasden.evaluation import markdown_table
from nasden.inference import denoise
from nasden.metrics import psnr
from nasden.noise import NoiseConfig
from nasden.run import load_final
from record import RESULTS, provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/set12"))
    parser.add_argument("--sigma", default="blind")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--name", default="tiled_routing", help="results file name (default tiled_routing)")
    args = parser.parse_args()
    space, spec, model = load_final(Path(args.run_dir))
    if not isinstance(model, DynamicDenoiser):
        raise SystemExit(f"{args.run_dir}: the final network is not a dynamic denoiser")
    sigma = [0.0, 50.0] if args.sigma == "blind" else float(args.sigma)
    pairs = evaluation_pairs(load_set(args.data, space.in_channels, "val"), NoiseConfig(sigma=sigma), seed=0)
    largest = model.candidates[-1]
    modes = {
        "largest candidate": lambda noisy: (denoise(largest, noisy, space.resolution_multiple).image,
                                            model.flops[-1]),
        "image routing": lambda noisy: _spent(denoise(model, noisy, space.resolution_multiple)),
        f"tile routing ({args.tile}px, overlap {args.overlap})": lambda noisy: _spent(
            denoise(model, noisy, space.resolution_multiple, args.tile, args.overlap, route="tile")),
    }
    rows = []
    for name, run in modes.items():
        scores, flops = [], []
        for _, noisy, clean in pairs:
            out, spent = run(noisy)
            scores.append(psnr(out, clean))
            flops.append(spent)
        rows.append({"mode": name, "psnr": round(sum(scores) / len(scores), 3),
                     "flops_per_pixel": round(sum(flops) / len(flops)),
                     "flops_vs_largest": round(sum(flops) / len(flops) / model.flops[-1], 3)})
        print(rows[-1], flush=True)
    result = {**provenance(), "run": str(args.run_dir), "data": args.data, "sigma": sigma, "images": len(pairs),
              "candidates_flops_per_pixel": model.flops, "gate_flops_per_pixel": model.gate_flops, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(
        f"# Tile vs image routing\n\n`{result['command']}` — {result['date']}, {result['git_revision']}\n\n"
        f"{len(pairs)} images from {args.data}, AWGN sigma {sigma}\n\n{markdown_table(rows)}")
    print(markdown_table(rows))


def _spent(result) -> tuple:
    return result.image, result.flops_per_pixel


if __name__ == "__main__":
    main()
