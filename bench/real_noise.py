"""Real camera noise (PolyU, scene-disjoint splits): does a network learn it, and from which noise?

One color network (the plain U-Net of ``recipes/real_noise.yaml``'s space: conv 3×3, chain inputs, full
width) is trained the same number of steps (Adam, MSE, cosine from the entry's learning rate, 1e-4 unless
named) on the same 63 clean ``polyu:train`` images:

* ``real``: with their real noisy partners (``data.pairs: real``);
* ``awgn``: with blind AWGN, σ uniform in [0, 15] (``data.pairs: clean``);
* ``camera``: with the synthetic camera noise of :mod:`nasden.data.noise` (``data.pairs: clean``);
* ``real_lr_1e-3``: ``real`` at the AWGN recipes' learning rate, 1e-3: on this mild noise Adam at 1e-3
  kills the ReLUs and the network stays the identity; ``awgn_lr_1e-3``: AWGN training at 1e-3, where it
  does not; ``real_lr_3e-4``: between the two (the recipe's learning rate);

and scored on the 31 held-out ``polyu:test`` pairs (scenes none of them saw) against the noisy
input. ``recipe`` runs ``recipes/real_noise.yaml`` itself (DARTS search, retrain, evaluate) and records
its figures and wall time. ``statistics`` compares the camera model's noise with the real noise on the
training images (PSNR, correlation between neighbouring pixels and between red and green). ``routing`` asks
whether real noise gives a router something to exploit (#17): the plain U-Net at 8 and 16 channels, each trained
the same steps on real pairs, scored per test image; how much the larger gains per image (mean, spread, and its
correlation with the noisy input's PSNR, which a gate could see), and an oracle that sends to the larger the
images that gain most, at the FLOPs halfway between, against the line through the two static networks.

    python bench/real_noise.py [statistics] [real awgn camera ...] [recipe] [routing] [--steps 3000]   # TRAINED

Each entry is written to ``bench/results/real_noise/<entry>.json`` as it finishes; ``report`` (run last,
or as the last entry) gathers ``bench/results/real_noise.{json,md}``. Needs ``polyu`` (``nasden data get
polyu``, or ``$NASDEN_DATA``).
"""
from __future__ import annotations

import argparse
import statistics as stats
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from frontier_math import EntryStore, frontier_psnr
from plain_training import train_plain
from routing_oracle import oracle_choices

from nasden.data.image_sets import load_set
from nasden.data.noise import NoiseConfig, add_noise
from nasden.data.quality import psnr
from nasden.deploy.inference import denoise
from nasden.deploy.model_file import load as load_final
from nasden.deploy.scoring import markdown_table
from nasden.pipeline.recipe import load_recipe
from nasden.pipeline.run import create_run, execute
from record import RESULTS, provenance, write_report

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "real_noise.yaml"
STORE = EntryStore(RESULTS / "real_noise")
CAMERA = {"kind": "camera", "peak": [200, 2000], "sigma": [0, 2], "jpeg": [80, 95]}
# entry: (pairs, noise, learning rate); the _lr_ entries show why the recipe trains real pairs at 3e-4
TRAINED = {"real": ("real", {}, 1e-4), "awgn": ("clean", {"sigma": [0, 15]}, 1e-4),
           "camera": ("clean", CAMERA, 1e-4), "real_lr_1e-3": ("real", {}, 1e-3),
           "awgn_lr_1e-3": ("clean", {"sigma": [0, 15]}, 1e-3), "real_lr_3e-4": ("real", {}, 3e-4)}


def trained(way: str, steps: int) -> dict[str, Any]:
    """The plain color U-Net trained ``steps`` on polyu:train with the noise ``way`` names, scored on polyu:test."""
    pairs, noise, lr = TRAINED[way]
    space = dict(load_recipe(RECIPE).space)
    data = {"train": "polyu:train", "val": "polyu:val", "pairs": pairs, "noise": noise, "val_crop": 256}
    with tempfile.TemporaryDirectory() as folder:
        _, summaries, seconds = train_plain(Path(folder), f"real_noise_{way}", space, data, steps, ["polyu:test"], lr)
    test = summaries[-1]["sets"][0]
    trained_on = f"polyu:train, {pairs} pairs" + (f" + {noise}" if noise else "") + f" (lr {lr:g})"
    return {**provenance(), "entry": way, "trained_on": trained_on, "steps": steps, "lr": lr, "space": space,
            "psnr": test["psnr"], "ssim": test["ssim"], "input_psnr": test["input_psnr"],
            "flops_per_pixel": test["flops_per_pixel"], "seconds": round(seconds, 1)}


def recipe_entry() -> dict[str, Any]:
    """``recipes/real_noise.yaml`` as a user runs it."""
    recipe = load_recipe(RECIPE)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        summaries = execute(create_run(recipe, Path(folder) / "run"), quiet=True)
        seconds = time.perf_counter() - started
    test = next(row for row in summaries[-1]["sets"] if row["set"] == "polyu:test")
    return {**provenance(), "entry": "recipe", "trained_on": "polyu:train, real pairs (DARTS search + retrain)",
            "steps": sum(getattr(stage.options, "steps", 0) for stage in recipe.stages),  # search's included
            "psnr": test["psnr"], "ssim": test["ssim"],
            "input_psnr": test["input_psnr"], "flops_per_pixel": test["flops_per_pixel"],
            "derived": summaries[0]["arch"], "seconds": round(seconds, 1)}


def routing_potential(steps: int) -> dict[str, Any]:
    """Per ``polyu:test`` image, the plain U-Net's PSNR at 8 and 16 channels (real pairs, lr 3e-4, ``steps`` each),
    the larger's gain, and the image oracle halfway between their FLOPs against the line through them."""
    base = dict(load_recipe(RECIPE).space)
    data = {"train": "polyu:train", "val": "polyu:val", "pairs": "real", "val_crop": 256}
    test = load_set("polyu:test", 3)
    psnrs, flops, seconds = [], [], 0.0
    for channels in (8, 16):
        with tempfile.TemporaryDirectory() as folder:  # the run's own evaluation: the small val set, for its FLOPs
            run_dir, summaries, spent = train_plain(Path(folder), f"routing_{channels}",
                                                    {**base, "channels": channels}, data, steps, ["val"], 3e-4)
            loaded = load_final(run_dir)
            space, model = loaded.space, loaded.network
        with torch.no_grad():
            psnrs.append([psnr(denoise(model, noisy, space.resolution_multiple).image, clean)
                          for noisy, clean in zip(test.noisy, test.clean)])
        flops.append(summaries[-1]["sets"][0]["flops_per_pixel"])
        seconds += spent
    gains = [large - small for small, large in zip(*psnrs)]
    inputs = [psnr(noisy, clean) for noisy, clean in zip(test.noisy, test.clean)]
    halfway = (flops[0] + flops[1]) / 2
    choice = oracle_choices(torch.tensor(psnrs, dtype=torch.float64).T, flops, halfway, torch.ones(len(gains)))
    oracle = (stats.mean(flops[e] for e in choice.tolist()),
              stats.mean(psnrs[e][i] for i, e in enumerate(choice.tolist())))
    line = frontier_psnr([(flops[0], stats.mean(psnrs[0])), (flops[1], stats.mean(psnrs[1]))], oracle[0])
    return {**provenance(), "entry": "routing", "steps": steps, "flops_per_pixel": flops,
            "psnr": [round(stats.mean(p), 3) for p in psnrs], "per_image": {
                "names": test.names, "input_psnr": inputs, "psnr_8": psnrs[0], "psnr_16": psnrs[1]},
            "gain": {"mean": stats.mean(gains), "sd": stats.stdev(gains), "min": min(gains), "max": max(gains),
                     "correlation_with_input_psnr": stats.correlation(gains, inputs)},
            "oracle": {"flops_per_pixel": oracle[0], "psnr": oracle[1], "line": line, "vs_line": oracle[1] - line},
            "seconds": round(seconds, 1)}


def correlations(residual: torch.Tensor) -> dict[str, float]:
    """Of a noise residual ``[N, 3, H, W]``: between horizontal neighbours, and between red and green."""
    def corr(a: torch.Tensor, b: torch.Tensor) -> float:
        return round(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item(), 3)
    return {"neighbour_correlation": corr(residual[..., :-1], residual[..., 1:]),
            "red_green_correlation": corr(residual[:, 0], residual[:, 1])}


def noise_statistics() -> dict[str, Any]:
    """The real noise of polyu:train against the camera model's on the same clean images."""
    images = load_set("polyu:train", 3)
    clean, noisy = torch.stack(images.clean), torch.stack(images.noisy)
    synthetic = add_noise(clean, NoiseConfig(**CAMERA), torch.Generator().manual_seed(0))
    rows = [{"noise": name, "psnr": round(stats.mean(psnr(n[None], c[None]) for n, c in zip(x, clean)), 3),
             **correlations(x - clean)} for name, x in (("real (PolyU)", noisy), ("camera model", synthetic))]
    return {**provenance(), "entry": "statistics", "camera": CAMERA, "rows": rows}


def report() -> None:
    rows = [{"trained on": r["trained_on"], "steps": r["steps"], "FLOPs/pixel": r["flops_per_pixel"],
             "polyu:test PSNR": r["psnr"], "noisy input": r["input_psnr"], "gain (dB)": round(r["psnr"] -
             r["input_psnr"], 3), "SSIM": r["ssim"], "wall s": r["seconds"]}
            for r in (STORE.load(k) for k in (*TRAINED, "recipe")) if r]
    noise = STORE.load("statistics")
    body = ("31 held-out PolyU pairs (scenes no training image shows), color, full 512² crops; PSNR in dB over RGB. "
            "Train: the 63 `polyu:train` images, patches 48², batch 16, Adam, cosine learning rate from the lr named. "
            "'wall s' on the machine above, 2 CPU cores.\n\n" + markdown_table(rows))
    if noise:
        body += (f"\n\nNoise statistics on polyu:train (camera model {noise['camera']}):\n\n"
                 + markdown_table(noise["rows"]))
    routing = STORE.load("routing")
    if routing:
        gain, oracle = routing["gain"], routing["oracle"]
        body += (f"\n\nDoes real noise give a router something to exploit? The plain U-Net at 8 and 16 channels "
                 f"({routing['flops_per_pixel'][0]:.0f} and {routing['flops_per_pixel'][1]:.0f} FLOPs/pixel), "
                 f"each trained {routing['steps']} steps on real pairs (lr 3e-4), score {routing['psnr'][0]} and "
                 f"{routing['psnr'][1]} dB on polyu:test. The larger gains {gain['mean']:.3f} dB per image on "
                 f"average (sd {gain['sd']:.3f}, {gain['min']:.3f} to {gain['max']:.3f}; correlation with the noisy "
                 f"input's PSNR {gain['correlation_with_input_psnr']:.2f}). An oracle sending the images that gain "
                 f"most to the larger, at {oracle['flops_per_pixel']:.0f} FLOPs/pixel: {oracle['psnr']:.3f} dB, "
                 f"{oracle['vs_line']:+.3f} against the line through the two networks ({oracle['line']:.3f}).")
    print(write_report("real_noise", {"rows": rows, "statistics": noise, "routing": routing},
                       "Real camera noise (PolyU)", body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entries", nargs="*", default=["statistics", *TRAINED, "recipe", "routing", "report"],
                        choices=["statistics", *TRAINED, "recipe", "routing", "report"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    for name in args.entries:
        if name == "report":
            report()
        elif name == "statistics":
            STORE.run(name, noise_statistics, args.force)
        elif name == "recipe":
            STORE.run(name, recipe_entry, args.force)
        elif name == "routing":
            STORE.run(name, lambda: routing_potential(args.steps), args.force)
        else:
            STORE.run(name, lambda n=name: trained(n, args.steps), args.force)
        print(f"  {name}: done", flush=True)


if __name__ == "__main__":
    main()
