"""A colour photo through a gray denoiser (each RGB channel, or the luminance only: ``nasden.data.color``), and
against a network trained in colour.

Scores a gray run's network on CBSD68 with AWGN drawn independently per RGB channel (σ 25, seed 0),
both ways, against the noisy input; PSNR over the three channels. The same network on BSD68 (the
gray versions of the same images) is the reference the channel-wise way should approach. With
``--color-run``, a colour network (``image_channels: 3``) is scored on the same noisy images. FLOPs are
per colour pixel: the channel-wise way pays the gray network three times.

``--train STEPS`` makes both runs first: the plain U-Net of ``SPACE`` trained STEPS at σ 25, gray on
Train400 and in colour on the clean images of ``polyu:train`` (colour photographs that are not test
images; CBSD68 is kept out of training).

    python bench/color_through_gray.py RUN_DIR [--color-run RUN_DIR] [--sigma 25] [--images 68]
    python bench/color_through_gray.py --train 3000

Results: bench/results/color_through_gray.{json,md}.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from plain_training import train_plain

from nasden.core.cost import cost
from nasden.data.color import denoise_in_color
from nasden.data.image_sets import evaluation_pairs, load_set
from nasden.data.noise import NoiseConfig
from nasden.data.quality import psnr
from nasden.deploy.inference import denoise
from nasden.deploy.model_file import load
from nasden.deploy.scoring import markdown_table
from record import write_report

SPACE = {"name": "mod_unet", "stages": 1, "levels": 2, "channels": 16, "layers": 3}


def trained_runs(folder: Path, steps: int, sigma: float) -> tuple[Path, Path]:
    """The gray (Train400) and colour (polyu:train, clean) plain U-Nets, trained ``steps`` at ``sigma``."""
    noise = {"kind": "gaussian", "sigma": sigma}
    gray, _, _ = train_plain(folder, "gray", SPACE, {"train": "train400", "noise": noise}, steps, ["val"])
    colour, _, _ = train_plain(folder, "colour", {**SPACE, "image_channels": 3},
                               {"train": "polyu:train", "pairs": "clean", "noise": noise}, steps, ["val"])
    return gray, colour


def scored(way: str, pairs: list[tuple[str, torch.Tensor, torch.Tensor]], run: Callable[[torch.Tensor], torch.Tensor],
           flops: float, name: str = "CBSD68 (RGB)") -> dict[str, Any]:
    start = time.perf_counter()
    scores = [psnr(run(noisy), clean) for _, noisy, clean in pairs]
    return {"set": name, "way": way, "psnr": statistics.mean(scores), "FLOPs/pixel": flops,
            "s_per_image": (time.perf_counter() - start) / len(pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--color-run", type=Path)
    parser.add_argument("--train", type=int, metavar="STEPS", help="train both runs first (see above)")
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--images", type=int, default=68)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.train:
            args.run_dir, args.color_run = trained_runs(Path(folder), args.train, args.sigma)
        elif args.run_dir is None:
            parser.error("give a gray RUN_DIR, or --train STEPS")
        report(args)


def report(args: argparse.Namespace) -> None:
    loaded = load(args.run_dir)
    space, spec, model = loaded.space, loaded.spec, loaded.network
    if space.in_channels != 1:
        raise SystemExit(f"{args.run_dir}: not a gray network")
    flops = cost(space, spec["arch"]).flops_per_pixel if spec["kind"] == "static" else float("nan")
    noise = NoiseConfig(sigma=args.sigma)
    colour = evaluation_pairs(load_set("cbsd68", 3), noise, seed=0, limit=args.images)
    gray = evaluation_pairs(load_set("bsd68", 1), noise, seed=0, limit=args.images)

    def gray_pass(image: torch.Tensor) -> torch.Tensor:
        return denoise(model, image, space.resolution_multiple).image

    rows = [{"set": "CBSD68 (RGB)", "way": "noisy input", "FLOPs/pixel": 0.0, "s_per_image": 0.0,
             "psnr": statistics.mean(psnr(noisy, clean) for _, noisy, clean in colour)}]
    rows += [scored(f"gray network, {mode}", colour, lambda x, m=mode: denoise_in_color(gray_pass, x, m),
                    flops * (3 if mode == "channels" else 1)) for mode in ("channels", "luma")]
    if args.color_run:
        loaded = load(args.color_run)
        c_space, c_spec, c_model = loaded.space, loaded.spec, loaded.network
        if c_space.in_channels != 3:
            raise SystemExit(f"{args.color_run}: not a colour network")
        rows.append(scored("colour network", colour,
                           lambda x: denoise(c_model, x, c_space.resolution_multiple).image,
                           cost(c_space, c_spec["arch"]).flops_per_pixel))
    rows.append(scored("gray network", gray, gray_pass, flops, "BSD68 (gray)"))
    body = (f"Gray network: {args.run_dir} ({spec['kind']}); colour network: {args.color_run or 'none'}; "
            f"AWGN σ {args.sigma:g} independent per channel, {len(colour)} images. " +
            (f"Both trained {args.train} steps by `--train` (the plain U-Net {SPACE}): gray on Train400, colour "
             f"on polyu:train's clean images. " if args.train else "") + "\n\n" + markdown_table(rows))
    print(write_report("color_through_gray", {"run_dir": str(args.run_dir), "color_run": str(args.color_run),
                                              "trained_steps": args.train, "rows": rows},
                       "A colour photo through a gray denoiser", body))


if __name__ == "__main__":
    main()
