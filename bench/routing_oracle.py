"""How much could a router gain? Every candidate's PSNR per image and per tile, and an oracle that routes on them.

    python bench/routing_oracle.py RUN_DIR --entry NAME [--setting blind] [--budget 1] [--tile 48]

RUN_DIR: a finished run whose final network is a dynamic denoiser (a frontier entry run with ``--keep``).
On BSD68 at the frontier setting's test σ (noise of seed 0, as the frontier scores it), every candidate
denoises every image whole. The oracle knows each candidate's true PSNR gain and routes each image, or
each ``--tile`` square of it, with the gain gate's rule: argmax_e(gain_e - λ·FLOPs_e/FLOPs_max), λ the
smallest that meets a mean-FLOPs budget over all images and σ. A tile's gain is its share of the image's
PSNR gain, linearised around the largest candidate's error; tiles are cut from the whole-image outputs
(tile routing with enough overlap), and the PSNR reported is the assembled image's, measured.

Against the static frontier of bench/results/frontier.json (same setting and budget) at the gate's mean
FLOPs: where even the oracle falls below it, no gate over these candidates can beat hand design, and the
candidates, not the gate, are what to fix.
Writes bench/results/routing_oracle-<entry>-<setting>-b<budget>.{json,md,png}.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Sequence

import torch
from frontier import DATA, SETTINGS
from frontier_math import frontier_psnr
from torch import Tensor

from nasden.core.specs import is_dynamic
from nasden.data.image_sets import evaluation_pairs, load_set
from nasden.data.noise import NoiseConfig
from nasden.data.quality import psnr
from nasden.deploy.inference import denoise
from nasden.deploy.model_file import load as load_final
from nasden.deploy.scoring import markdown_table
from nasden.pipeline.plots import psnr_flops_figure, save_png
from nasden.strategies.gate import smallest_bias
from record import RESULTS, write_report

DB_PER_LOG = 10 / math.log(10)  # d PSNR = -DB_PER_LOG · d MSE / MSE


def oracle_choices(gains: Tensor, flops: Sequence[float], budget: float, weights: Tensor) -> Tensor:
    """Per unit (a row of ``gains``: its dB under each candidate, cheapest first), the candidate
    argmax_e(gains_e - λ·flops_e/max(flops)) with the smallest λ >= 0 at which the ``weights``-weighted mean of
    the chosen FLOPs is at most ``budget`` (at least the cheapest candidate's)."""
    relative = torch.tensor(flops, dtype=gains.dtype) / max(flops)
    costs = torch.tensor(flops, dtype=gains.dtype)

    def choose(bias: float) -> Tensor:
        return (gains - bias * relative).argmax(1)

    return choose(smallest_bias(lambda bias: float((weights * costs[choose(bias)]).sum() / weights.sum()), budget))


def tile_errors(output: Tensor, clean: Tensor, tile: int) -> Tensor:
    """Summed squared error of each ``tile``×``tile`` square of an image (edge tiles smaller), row-major."""
    error = (output - clean).square().sum(0)
    rows, cols = math.ceil(error.shape[0] / tile), math.ceil(error.shape[1] / tile)
    padded = torch.zeros(rows * tile, cols * tile, dtype=error.dtype)
    padded[:error.shape[0], :error.shape[1]] = error
    return padded.reshape(rows, tile, cols, tile).sum((1, 3)).flatten()


def assemble(outputs: Sequence[Tensor], choice: Tensor, tile: int) -> Tensor:
    """The image whose every tile comes from the output of the candidate ``choice`` names for it."""
    height, width = outputs[0].shape[-2:]
    cols = math.ceil(width / tile)
    image = outputs[0].clone()
    for index, e in enumerate(choice.tolist()):
        r, c = divmod(index, cols)
        window = (..., slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
        image[window] = outputs[e][window]
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--entry", required=True, help="the frontier entry the run belongs to (names the results)")
    parser.add_argument("--setting", default="blind", choices=list(SETTINGS))
    parser.add_argument("--budget", type=float, default=1.0)
    parser.add_argument("--tile", type=int, default=48)
    args = parser.parse_args()
    loaded = load_final(Path(args.run_dir))
    space, model = loaded.space, loaded.network
    if not is_dynamic(model):
        raise SystemExit(f"{args.run_dir}: the final network is not a dynamic denoiser")
    multiple, flops = space.resolution_multiple, model.flops
    images = load_set(str(DATA / "bsd68"), space.in_channels, "val")
    rows: list[dict] = []  # per image and σ
    for sigma in SETTINGS[args.setting]["test"]:
        for name, noisy, clean in evaluation_pairs(images, NoiseConfig(sigma=sigma), 0):
            with torch.no_grad():
                outputs = [denoise(c, noisy, multiple).image for c in model.candidates]
                model.reset_counts()
                routed = denoise(model, noisy, multiple).image
            errors = torch.stack([tile_errors(o, clean, args.tile) for o in outputs], 1)  # tiles × candidates
            rows.append({"image": name, "sigma": sigma, "outputs": outputs, "clean": clean, "errors": errors,
                         "psnr": [psnr(o, clean) for o in outputs], "gate_psnr": psnr(routed, clean),
                         "gate_flops": model.spent()["flops_per_pixel"]})
    gate = (statistics.mean(r["gate_flops"] for r in rows), statistics.mean(r["gate_psnr"] for r in rows))
    image_gains = torch.tensor([r["psnr"] for r in rows], dtype=torch.float64)
    image_weights = torch.ones(len(rows), dtype=torch.float64)
    tile_gains, tile_weights, owner = [], [], []
    for i, r in enumerate(rows):
        pixels = r["clean"][0].numel()
        largest = r["errors"][:, -1:].sum()  # the image's squared error under the largest candidate
        tile_gains.append(DB_PER_LOG * (r["errors"][:, -1:] - r["errors"]).double() / largest.double())
        sizes = tile_errors(torch.ones_like(r["clean"][:1]), torch.zeros_like(r["clean"][:1]), args.tile)
        tile_weights.append(sizes.double() / pixels)
        owner += [i] * len(sizes)
    tile_gains_all, tile_weights_all, owner_t = torch.cat(tile_gains), torch.cat(tile_weights), torch.tensor(owner)

    def image_oracle(budget: float) -> tuple[float, float]:
        choice = oracle_choices(image_gains, flops, budget, image_weights)
        return (statistics.mean(flops[e] for e in choice.tolist()),
                statistics.mean(r["psnr"][e] for r, e in zip(rows, choice.tolist())))

    def tile_oracle(budget: float) -> tuple[float, float]:
        choice = oracle_choices(tile_gains_all, flops, budget, tile_weights_all)
        spent = float((tile_weights_all * torch.tensor(flops, dtype=torch.float64)[choice]).sum()) / len(rows)
        scores = [psnr(assemble(r["outputs"], choice[owner_t == i], args.tile), r["clean"]) for i, r in enumerate(rows)]
        return spent, statistics.mean(scores)

    key = f"{args.setting}-b{args.budget:g}"
    line = [tuple(p) for p in json.loads((RESULTS / "frontier.json").read_text())["frontiers"][key]["frontier"]]
    budgets = [flops[0] + (flops[-1] - flops[0]) * t / 8 for t in range(9)]
    curves = {"image oracle": [image_oracle(b) for b in budgets], "tile oracle": [tile_oracle(b) for b in budgets]}
    at_gate = {"image oracle": image_oracle(gate[0]), "tile oracle": tile_oracle(gate[0])}
    table = [{"router": "gate (trained)", "FLOPs/pixel": round(gate[0]), "BSD68 PSNR": round(gate[1], 3)}]
    table += [{"router": name, "FLOPs/pixel": round(f), "BSD68 PSNR": round(p, 3)} for name, (f, p) in at_gate.items()]
    for row in table:
        reference = frontier_psnr(line, row["FLOPs/pixel"])
        row["vs static frontier (dB)"] = "–" if reference is None else round(row["BSD68 PSNR"] - reference, 3)
    spread = []
    for sigma in SETTINGS[args.setting]["test"]:
        gains = [r["psnr"][-1] - r["psnr"][0] for r in rows if r["sigma"] == sigma]
        spread.append({"σ": sigma, **{f"candidate {e} PSNR": round(statistics.mean(
            r["psnr"][e] for r in rows if r["sigma"] == sigma), 3) for e in range(len(flops))},
            "largest - smallest: mean": round(statistics.mean(gains), 3), "sd": round(statistics.stdev(gains), 3),
            "min": round(min(gains), 3), "max": round(max(gains), 3)})
    figure = psnr_flops_figure({**curves, "static frontier": line, "gate": [gate],
                                "candidates": [(f, statistics.mean(r["psnr"][e] for r in rows))
                                               for e, f in enumerate(flops)]},
                               f"routers over the candidates (BSD68, {args.setting})", scattered=("gate", "candidates"))
    name = f"routing_oracle-{args.entry}-{args.setting}-b{args.budget:g}"
    save_png(figure, RESULTS / f"{name}.png")
    body = (f"Run: `{args.run_dir}`; candidates' FLOPs/pixel {[round(f) for f in flops]}; tiles {args.tile}². "
            f"Static frontier: frontier.json `{key}`. PSNR is the mean over BSD68 images and test σ.\n\n"
            f"{markdown_table(table)}\nEach candidate alone, and the PSNR the largest gains over the smallest per "
            f"image, by σ:\n\n{markdown_table(spread)}\n![oracle]({name}.png)\n")
    print(write_report(name, {"at_gate": table, "spread": spread, "curves": curves, "candidates_flops": flops},
                       f"Routing oracle: {args.entry}", body))


if __name__ == "__main__":
    main()
