"""nasden's DARTS against NNI 3.0's DARTS on one small op-choice space (issue "MoD-NAS", benchmark).

Space: a DnCNN-like net with 6 searchable layers of 32 channels between a fixed head and tail conv,
candidates {conv 3×3, conv 5×5, dilated conv 3×3 (d=2), separable conv 3×3, identity}; gray 40×40
patches, batch 16, AWGN sigma 25, the training images split in halves (weights / architecture).
Both searches run the same number of steps, each in its own spawned process, first order; memory
is the peak resident memory during the search above what the process held when it began (data
loaded). Then each derived network, and a plain all-conv-3×3 network of similar FLOPs, is
retrained with the same budget and scored on held-out images.

NNI runs two ways: with its defaults (architecture Adam lr 3e-4, weight decay 1e-3), and with
the loss scaled ×1000 (what one tries when alpha does not move). nasden runs its defaults.

    pip install -e ".[nni]"     # nni==3.0 and pytorch-lightning
    python bench/darts_vs_nni.py --steps 600 --retrain 1500
    python bench/darts_vs_nni.py --no-nni --darts '{"temperature_min": 0.3, "entropy_penalty": 0.5}' --name NAME

Without NNI installed (or with ``--no-nni``) the NNI half is skipped. Results: bench/results/<name>.{json,md},
with nasden's alpha-gradient consistency per layer (strategies/darts.py): near its noise floor a layer's
candidates are worth the same within the batch-to-batch noise of the architecture steps.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from record import RESULTS, provenance, write_json

OPS = ["conv3x3", "conv5x5", "dilconv3x3", "sepconv3x3", "identity"]
SPACE = {"name": "dncnn", "depth": 8, "channels": 32, "bn": False, "ops": OPS}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options :func:`data_options` reads (patches per step and their size) and the CPU threads."""
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    train = str(SHARED / "train400") if (SHARED / "train400").is_dir() else "builtin"
    val = str(SHARED / "set12") if (SHARED / "set12").is_dir() else "builtin"
    return {"train": train, "val": val, "noise": {"kind": "gaussian", "sigma": 25}, "patch": args.patch,
            "batch": args.batch, "val_crop": 128}


class PeakMemory:
    """The resident memory when entered and its peak inside the block (polled every 2 ms from /proc)."""

    def __enter__(self) -> PeakMemory:
        self.before = self.peak = self._current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._current())

    @staticmethod
    def _current() -> float:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2 ** 20

    def figures(self) -> dict[str, float]:
        return {"rss_before_mb": round(self.before, 1), "peak_rss_mb": round(self.peak, 1)}


def _nasden_search(args: argparse.Namespace, out: Any) -> None:
    from nasden.common.registry import STRATEGIES
    from nasden.pipeline.recipe import parse_recipe
    from nasden.pipeline.run import RunContext, StageContext, create_run

    stage = {"strategy": "darts", "steps": args.steps, "warmup": args.warmup, "log_every": args.steps,
             "val_every": max(1, args.steps // 4), "checkpoint_every": args.steps, "val_size": 128,
             **json.loads(args.darts)}
    recipe = parse_recipe({"name": "darts-bench", "seed": args.seed, "device": "cpu", "data": data_options(args),
                           "space": SPACE, "stages": [stage]}, "<bench>")
    run = RunContext(recipe, create_run(recipe, Path(tempfile.mkdtemp()) / "run"), quiet=True)
    run.data.sampler, run.data.val  # load the images before measuring
    with PeakMemory() as memory:
        start = time.perf_counter()
        summary = STRATEGIES.get("darts")(recipe.stages[0].options).run(StageContext(run, 0, "darts"))
        seconds = time.perf_counter() - start
    out.put({"arch": summary["arch"], "probabilities": summary["largest_probability"],
             "supernet_val_psnr": summary["supernet_val_psnr"], "seconds_per_step": seconds / args.steps,
             "gradient_consistency": summary["gradient_consistency"],
             "consistency_noise_floor": summary["consistency_noise_floor"],
             **memory.figures()})


def _nni_batches(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    from nasden.data.image_sets import DataConfig, RunData
    from nasden.pipeline.recipe import convert

    config = convert(DataConfig, data_options(args), "data")
    weights, arch = RunData(config, 1, 0).sampler.halves()
    w = [weights.batch(step, stream=1) for step in range(args.steps)]
    a = [arch.batch(step, stream=2) for step in range(args.steps)]
    return (torch.cat([n for n, _ in w]), torch.cat([c for _, c in w]),
            torch.cat([n for n, _ in a]), torch.cat([c for _, c in a]))


def _nni_search(args: argparse.Namespace, loss_scale: float, out: Any) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
    from nni.nas.experiment import NasExperiment
    from nni.nas.nn.pytorch import LayerChoice, ModelSpace
    from nni.nas.strategy import DARTS
    from pytorch_lightning.callbacks import Callback
    from torch import nn

    class Separable(nn.Sequential):
        def __init__(self, c: int):
            super().__init__(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.Conv2d(c, c, 1))

    class Space(ModelSpace):
        def __init__(self, c: int = 32, n: int = 6):
            super().__init__()
            self.head = nn.Conv2d(1, c, 3, padding=1)
            self.layers = nn.ModuleList([LayerChoice({
                "conv3x3": nn.Conv2d(c, c, 3, padding=1), "conv5x5": nn.Conv2d(c, c, 5, padding=2),
                "dilconv3x3": nn.Conv2d(c, c, 3, padding=2, dilation=2), "sepconv3x3": Separable(c),
                "identity": nn.Identity()}, label=f"op:conv{i + 2}") for i in range(n)])
            self.tail = nn.Conv2d(c, 1, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.head(x))
            for layer in self.layers:
                h = F.relu(layer(h))
            return x - self.tail(h)

    class Denoising(LightningModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            noisy, clean = batch
            return loss_scale * F.mse_loss(self(noisy), clean)

        def validation_step(self, batch: Any, index: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Clock(Callback):
        def on_train_start(self, trainer: Any, module: Any) -> None:
            self.start = time.perf_counter()

        def on_train_end(self, trainer: Any, module: Any) -> None:
            self.seconds = time.perf_counter() - self.start

    torch.manual_seed(args.seed)
    wn, wc, an, ac = _nni_batches(args)
    clock = Clock()
    trainer = Trainer(max_epochs=1, enable_progress_bar=False, logger=False, enable_checkpointing=False,
                      accelerator="cpu", callbacks=[clock], limit_val_batches=0)
    evaluator = Lightning(Denoising(), trainer,
                          train_dataloaders=DataLoader(torch.utils.data.TensorDataset(wn, wc), batch_size=args.batch),
                          val_dataloaders=DataLoader(torch.utils.data.TensorDataset(an, ac), batch_size=args.batch))
    experiment = NasExperiment(Space(), evaluator, DARTS())
    with PeakMemory() as memory:
        experiment.run()
    arch = experiment.export_top_models(formatter="dict")[0]
    probs = experiment.strategy.oneshot_module.export_probs()
    out.put({"arch": arch, "probabilities": {label: max(p.values()) for label, p in probs.items()},
             "all_probabilities": {label: {k: round(v, 4) for k, v in p.items()} for label, p in probs.items()},
             "seconds_per_step": clock.seconds / args.steps, **memory.figures()})


def _in_process(target: Any, *args: Any) -> dict[str, Any]:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def retrain(arch: dict[str, Any], space_options: dict[str, Any], args: argparse.Namespace,
            weight_init: str = "default") -> dict[str, Any]:
    """Train ``arch`` from scratch (weights drawn by ``weight_init``; Adam 1e-3 → 1e-6 cosine, MSE) and score it on
    the held-out images."""
    from nasden.core.cost import cost
    from nasden.core.extract import extract
    from nasden.core.initialisation import initialise
    from nasden.core.supernet import Supernet
    from nasden.data.image_sets import DataConfig, RunData
    from nasden.deploy.scoring import score
    from nasden.pipeline.recipe import build_space, convert
    from nasden.pipeline.schedule import cosine_lr, set_lr

    space = build_space(space_options)
    data = RunData(convert(DataConfig, data_options(args), "data"), 1, 0)
    torch.manual_seed(args.seed)
    supernet = Supernet(space)
    initialise(supernet, weight_init)
    model = extract(supernet, arch).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for step in range(args.retrain):
        set_lr(optimizer, cosine_lr(step, args.retrain, 1e-3, 1e-6))
        noisy, clean = data.sampler.batch(step, stream=3)
        loss = F.mse_loss(model(noisy), clean)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    c = cost(space, arch)
    result = score(model, data.val, "held-out")
    return {"psnr": round(result.psnr, 3), "flops_per_pixel": c.flops_per_pixel, "params": c.params,
            "train_seconds": round(time.perf_counter() - start, 1)}


def plain_conv3x3(flops: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The all-conv-3×3 DnCNN (32 channels) whose FLOPs/pixel are closest to ``flops``."""
    from nasden.core.cost import cost
    from nasden.pipeline.recipe import build_space

    best = None
    for depth in range(3, 40):
        options = {"name": "dncnn", "depth": depth, "channels": 32, "bn": False}
        space = build_space(options)
        gap = abs(cost(space, space.largest()).flops_per_pixel - flops)
        if best is None or gap < best[0]:
            best = (gap, options, space.largest())
    assert best is not None
    return best[1], best[2]


def _identity_count(arch: dict[str, Any]) -> int:
    return sum(1 for value in arch.values() if value == "identity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--retrain", type=int, default=1500)
    add_data_arguments(parser)
    parser.add_argument("--darts", default="{}", help="further options of nasden's darts stage, as JSON")
    parser.add_argument("--no-nni", action="store_true", help="nasden's search only")
    parser.add_argument("--name", default="darts_vs_nni", help="results file name (default darts_vs_nni)")
    parser.add_argument("--seed", type=int, default=0, help="the searches' seeds and the retrained networks' "
                        "initialisation (the training patches and the held-out noise stay those of seed 0)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"setup": {"space": SPACE, "data": data_options(args), "steps": args.steps,
                                         "nasden_warmup": args.warmup, "retrain_steps": args.retrain,
                                         "nasden_darts_options": json.loads(args.darts), "seed": args.seed}}
    print("nasden DARTS ...", flush=True)
    results["nasden"] = _in_process(_nasden_search, args)
    try:
        import nni  # noqa: F401
        import pytorch_lightning  # noqa: F401
        has_nni = not args.no_nni
    except ImportError:
        has_nni = False
        print("NNI is not installed: skipping the NNI half (pip install -e '.[nni]')", flush=True)
    if has_nni:
        for name, scale in (("nni", 1.0), ("nni_loss_x1000", 1000.0)):
            print(f"{name} DARTS ...", flush=True)
            results[name] = _in_process(_nni_search, args, scale)
    # the search's initialisation for every network retrained here, so the plain net is not handicapped
    weight_init = json.loads(args.darts).get("weight_init", "default")
    derived = {"nasden": (results["nasden"]["arch"], SPACE)}
    if has_nni:
        derived["nni"] = (results["nni"]["arch"], SPACE)
    for name, (arch, options) in derived.items():
        print(f"retraining {name} ...", flush=True)
        results[name]["retrained"] = retrain(arch, options, args, weight_init)
        results[name]["identity_layers"] = _identity_count(arch)
    plain_options, plain_arch = plain_conv3x3(results["nasden"]["retrained"]["flops_per_pixel"])
    print("retraining the plain conv 3×3 net ...", flush=True)
    results["plain_conv3x3"] = {"space": plain_options,
                                "retrained": retrain(plain_arch, plain_options, args, weight_init)}
    if has_nni:
        results["nni_loss_x1000"]["identity_layers"] = _identity_count(results["nni_loss_x1000"]["arch"])
        results["ratios"] = {
            "time_per_step_nasden_over_nni": results["nasden"]["seconds_per_step"] / results["nni"]["seconds_per_step"],
            "peak_rss_increase_nasden_over_nni": (
                (results["nasden"]["peak_rss_mb"] - results["nasden"]["rss_before_mb"])
                / (results["nni"]["peak_rss_mb"] - results["nni"]["rss_before_mb"])),
        }
    write_json(args.name, results)
    (RESULTS / f"{args.name}.md").write_text(_markdown(results, provenance()))
    print(_markdown(results, provenance()))


def _markdown(results: dict[str, Any], p: dict[str, Any]) -> str:
    lines = ["| search | s/step | peak RSS MB (increase) | max softmax per layer | identity layers | "
             "retrained PSNR | FLOPs/pixel |", "|---|---|---|---|---|---|---|"]
    for name in ("nasden", "nni", "nni_loss_x1000"):
        if name not in results:
            continue
        r = results[name]
        retrained = r.get("retrained", {})
        probs = " ".join(f"{p:.2f}" for p in r["probabilities"].values())
        lines.append(f"| {name} | {r['seconds_per_step']:.3f} | {r['peak_rss_mb']:.0f} "
                     f"(+{r['peak_rss_mb'] - r['rss_before_mb']:.0f}) | {probs} | {r.get('identity_layers', '')} | "
                     f"{retrained.get('psnr', '')} | {retrained.get('flops_per_pixel', '')} |")
    plain = results["plain_conv3x3"]
    lines.append(f"| plain conv3x3 (depth {plain['space']['depth']}) | | | | 0 | {plain['retrained']['psnr']} | "
                 f"{plain['retrained']['flops_per_pixel']} |")
    out = "\n".join(lines) + "\n\nDerived architectures:\n\n"
    for name in ("nasden", "nni", "nni_loss_x1000"):
        if name in results:
            out += f"- {name}: {', '.join(results[name]['arch'][k] for k in sorted(results[name]['arch']))}\n"
    if "ratios" in results:
        out += "\nRatios: " + ", ".join(f"{k} {v:.2f}" for k, v in results["ratios"].items()) + "\n"
    if results["setup"]["nasden_darts_options"]:
        options = json.dumps(results["setup"]["nasden_darts_options"])
        out += f"\nnasden's darts options beyond its defaults: `{options}`\n"
    out += f"\nSupernet validation PSNR during nasden's search (step, dB): {results['nasden']['supernet_val_psnr']}\n"
    nasden = results["nasden"]
    out += ("\nnasden's alpha-gradient consistency per layer (‖Σg‖/√(nΣ‖g‖²) over its architecture steps; "
            f"pure noise reads about {nasden['consistency_noise_floor']:.3f}): "
            + " ".join(f"{v:.3f}" for v in nasden["gradient_consistency"].values()) + "\n")
    out += f"\nCommand: `{p['command']}`; {p['date']}; git {p['git_revision']}; {p['machine']}\n"
    return out


if __name__ == "__main__":
    main()
