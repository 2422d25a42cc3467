"""A colour photo through a gray denoiser: each RGB channel, or the luminance only (``nasden.color``).

Scores a gray run's network on CBSD68 with AWGN drawn independently per RGB channel (σ 25, seed 0),
both ways, against the noisy input; PSNR over the three channels. The same network on BSD68 (the
gray versions of the same images) is the reference the channel-wise way should approach.

    python bench/color_through_gray.py RUN_DIR [--sigma 25] [--images 68]

Results: bench/results/color_through_gray.{json,md}.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from nasden.color import denoise_in_color
from nasden.data import evaluation_pairs, load_set
from nasden.evaluation import markdown_table
from nasden.final import load
from nasden.inference import denoise
from nasden.metrics import psnr
from nasden.noise import NoiseConfig
from record import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--images", type=int, default=68)
    args = parser.parse_args()
    space, spec, model = load(args.run_dir)
    if space.in_channels != 1:
        raise SystemExit(f"{args.run_dir}: not a gray network")
    noise = NoiseConfig(sigma=args.sigma)
    colour = evaluation_pairs(load_set("cbsd68", 3), noise, seed=0, limit=args.images)
    gray = evaluation_pairs(load_set("bsd68", 1), noise, seed=0, limit=args.images)

    def gray_pass(image: torch.Tensor) -> torch.Tensor:
        return denoise(model, image, space.resolution_multiple).image

    rows = [{"set": "CBSD68 (RGB)", "way": "noisy input",
             "psnr": statistics.mean(psnr(noisy, clean) for _, noisy, clean in colour), "s_per_image": 0.0}]
    for mode in ("channels", "luma"):
        start = time.perf_counter()
        scores = [psnr(denoise_in_color(gray_pass, noisy, mode), clean) for _, noisy, clean in colour]
        rows.append({"set": "CBSD68 (RGB)", "way": mode, "psnr": statistics.mean(scores),
                     "s_per_image": (time.perf_counter() - start) / len(colour)})
    start = time.perf_counter()
    scores = [psnr(gray_pass(noisy), clean) for _, noisy, clean in gray]
    rows.append({"set": "BSD68 (gray)", "way": "gray network", "psnr": statistics.mean(scores),
                 "s_per_image": (time.perf_counter() - start) / len(gray)})
    body = (f"Network: {args.run_dir} ({spec['kind']}), AWGN σ {args.sigma:g} independent per channel, "
            f"{len(colour)} images.\n\n" + markdown_table(rows))
    print(write_report("color_through_gray", {"run_dir": str(args.run_dir), "rows": rows},
                       "A colour photo through a gray denoiser", body))


if __name__ == "__main__":
    main()
