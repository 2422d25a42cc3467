"""The ``nasden`` command: search | resume | worker | validate | ls | eval | denoise | export."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

from nasden import distributed
from nasden.data import DataError, evaluation_pairs, load_set
from nasden.images import EXTENSIONS, ImageError, list_images, load_image, save_image
from nasden.noise import NoiseConfig
from nasden.recipe import RecipeError, load_recipe
from nasden.registry import SPACES, STRATEGIES, UnknownNameError
from nasden.space import SpaceError
from nasden.strategy import StageFailed

USER_ERRORS = (RecipeError, DataError, ImageError, SpaceError, UnknownNameError, FileExistsError, FileNotFoundError,
               NotADirectoryError)


def _search(args: argparse.Namespace) -> int:
    from nasden.run import create_run, execute
    recipe = load_recipe(args.recipe, args.override)
    _check_workers(args.workers)
    with distributed.process_group():  # under torchrun: rank 0 makes the run folder, every process runs it
        run_dir = distributed.from_main(lambda: create_run(recipe, Path(args.out) if args.out else Path("runs") / (
            f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}")))
        if distributed.is_main():
            print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir / 'tensorboard'})")
        execute(run_dir, args.quiet, args.workers)
    return 0


def _check_workers(workers: int) -> None:
    if not 1 <= workers <= 256:
        raise RecipeError(f"--workers: expected 1..256 processes, got {workers}")


def _run_folder(path: str) -> Path:
    run_dir = Path(path)
    if not (run_dir / "recipe.yaml").exists():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no recipe.yaml)")
    return run_dir


def _resume(args: argparse.Namespace) -> int:
    from nasden.run import execute
    _check_workers(args.workers)
    with distributed.process_group():
        execute(distributed.from_main(lambda: _run_folder(args.run_dir)), args.quiet, args.workers)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from nasden.run import StageContext, open_run
    from nasden.strategies.evolution import work
    ctx = open_run(_run_folder(args.run_dir), args.quiet)
    stages = ctx.recipe.stages
    if not 0 <= args.stage < len(stages) or stages[args.stage].strategy != "evolution":
        raise RecipeError(f"{args.run_dir}: stage {args.stage} is not an evolution stage "
                          f"(stages: {', '.join(s.strategy for s in stages)})")
    if len(ctx.summaries) < args.stage:
        raise RecipeError(f"{args.run_dir}: stage {args.stage} has not started; the stages before it must finish first")
    study = work(StageContext(ctx, args.stage, "evolution"), stages[args.stage].options, args.index)
    print(f"worker {args.index}: the study holds {len(study.trials)} trials")
    return 0


def _validate(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, args.override)
    space = recipe.build_space()
    stages = " → ".join(s.strategy for s in recipe.stages)
    print(f"{args.recipe}: ok: space {space.name!r} ({len(space.nodes)} nodes, {len(space.choices())} choices); "
          f"stages {stages}")
    return 0


def _first_line(obj: object) -> str:
    return obj.__doc__.strip().splitlines()[0] if obj.__doc__ else ""


def _ls(args: argparse.Namespace) -> int:
    print("search spaces:")
    for name in SPACES.names():
        print(f"  {name:<22} {_first_line(SPACES.get(name))}")
    print("strategies:")
    for name in STRATEGIES.names():
        print(f"  {name:<22} {_first_line(STRATEGIES.get(name))}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from nasden.evaluation import evaluate_network, markdown_table
    from nasden.run import load_final, save_json
    space, spec, model = load_final(Path(args.run_dir))
    images = load_set(args.data, space.in_channels, "val")
    pairs = evaluation_pairs(images, NoiseConfig(sigma=args.sigma), args.seed, crop=args.crop)
    row = {**evaluate_network(model, space, spec, pairs, str(args.data)), "sigma": args.sigma}
    print(markdown_table([row]), end="")
    if args.json:
        save_json(row, Path(args.json))
    return 0


def _check_sigma(run_dir: Path, sigma: float | None) -> None:
    """Warn when ``--sigma`` is not a noise level the run's model was trained for."""
    if sigma is None:
        return
    recipe = load_recipe(run_dir / "recipe.yaml")
    noise = recipe.data.noise
    train = Path(recipe.data.train)
    if (train / "noisy").is_dir():
        trained = f"real noise pairs from {train}"
    elif noise.kind != "gaussian":
        trained = f"{noise.kind} noise"
    else:
        low, high = noise.sigma_range
        if low <= sigma <= high:
            return
        trained = f"AWGN sigma {noise.levels or noise.sigma}"
    warnings.warn(f"this model was trained on {trained}, not AWGN sigma {sigma:g}, and takes no noise-level "
                  f"input; expect worse results", stacklevel=2)


def _denoise(args: argparse.Namespace) -> int:
    from nasden.dynamic import DynamicDenoiser
    from nasden.inference import denoise, route_map
    from nasden.run import load_final
    run_dir = Path(args.run_dir)
    space, _, model = load_final(run_dir)
    _check_sigma(run_dir, args.sigma)
    dynamic = isinstance(model, DynamicDenoiser)
    if (args.route_map or args.cost_bias is not None) and not dynamic:
        raise RecipeError("--route-map and --cost-bias need a dynamic denoiser (a run that ended with a gate)")
    if args.cost_bias is not None:
        model.cost_bias = args.cost_bias
    source, target = Path(args.input), Path(args.output)
    if source.is_dir():
        jobs = [(p, target / (p.stem + ".png")) for p in list_images(source)]
        if not jobs:
            raise ImageError(f"{source}: no image files")
    else:
        if target.is_dir() or target.suffix.lower() not in EXTENSIONS:
            target = target / (source.stem + ".png")
        jobs = [(source, target)]
    for src, dst in jobs:
        if dst.resolve() == src.resolve():
            raise ImageError(f"{dst}: would overwrite its input; choose another output")
        try:
            noisy = load_image(src, space.in_channels)
        except ImageError as err:
            if len(jobs) == 1:
                raise
            print(f"skipped: {err}", file=sys.stderr)
            continue
        result = denoise(model, noisy, space.resolution_multiple, args.tile or None, args.overlap, args.route,
                         quiet=args.quiet)
        save_image(result.image, dst)
        note = ""
        if dynamic:
            used = [result.choices.count(i) for i in range(len(model.candidates))]
            note = f"  ({result.flops_per_pixel:.4g} FLOPs/pixel; {args.route} routing, tiles per candidate {used})"
            if args.route_map:
                save_image(route_map(result, len(model.candidates)), Path(args.route_map) if len(jobs) == 1
                           else Path(args.route_map) / (src.stem + "_route.png"))
        print(f"{src} → {dst}{note}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from nasden.dynamic import DynamicDenoiser
    from nasden.extract import export_onnx, export_torchscript
    from nasden.run import load_final
    space, spec, model = load_final(Path(args.run_dir))
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise RecipeError("ONNX export needs the 'onnx' package: pip install nasden[onnx]") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    export = export_onnx if args.format == "onnx" else export_torchscript
    suffix = ".onnx" if args.format == "onnx" else ".pt"
    example = torch.rand(2, space.in_channels, 64, 64)
    manifest: dict = {"format": args.format, "in_channels": space.in_channels,
                      "size_multiple": space.resolution_multiple, "network": spec}
    if isinstance(model, DynamicDenoiser):
        manifest["routing"] = "candidate argmax(gate_logits[i] - network.cost_bias * network.flops[i] / max(flops))"
        manifest["gate"] = export(model.gate, example, out / f"gate{suffix}").name
        manifest["candidates"] = [export(c, example, out / f"candidate{i}{suffix}").name
                                  for i, c in enumerate(model.candidates)]
    else:
        manifest["file"] = export(model, example, out / f"denoiser{suffix}").name
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nasden", description="Neural-architecture search for image denoising.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    overrides = {"action": "append", "default": [], "dest": "override", "metavar": "KEY=VALUE",
                 "help": "override a recipe value, e.g. -o stages.0.steps=100 (repeatable)"}
    p = command("search", _search, "run a recipe's stages in a new run folder")
    p.add_argument("recipe", help="recipe YAML file")
    p.add_argument("--out", help="run folder (default: runs/<recipe name>-<time>)")
    p.add_argument("-o", "--override", **overrides)
    workers = {"type": int, "default": 1, "help": "local processes for evolution trials (default 1)"}
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    p.add_argument("--workers", **workers)
    p = command("resume", _resume, "continue a stopped or killed run where it left off")
    p.add_argument("run_dir")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--workers", **workers)
    p = command("worker", _worker, "join a running evolution stage's study and evaluate trials")
    p.add_argument("run_dir")
    p.add_argument("--stage", type=int, required=True, help="index of the evolution stage in the recipe")
    p.add_argument("--index", type=int, default=1, help="worker number (seeds its sampler; default 1)")
    p.add_argument("--quiet", action="store_true")
    p = command("validate", _validate, "check a recipe without running it")
    p.add_argument("recipe")
    p.add_argument("-o", "--override", **overrides)
    command("ls", _ls, "list the registered search spaces and strategies")
    p = command("eval", _eval, "score a run's final network on an image folder with synthetic noise")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="image folder, a noisy/clean pair folder, or 'builtin'")
    p.add_argument("--sigma", type=float, default=25.0, help="AWGN sigma on the 0-255 scale (default 25)")
    p.add_argument("--crop", type=int, help="centre-crop images to at most this size")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p = command("denoise", _denoise, "denoise image files with a run's final network")
    p.add_argument("run_dir")
    p.add_argument("input", help="an image file or a folder of images")
    p.add_argument("output", help="output PNG file, or folder")
    p.add_argument("--tile", type=int, default=512, help="tile size for large images (0: whole image; default 512)")
    p.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default 32)")
    p.add_argument("--route", choices=["image", "tile"], default="image",
                   help="dynamic denoisers: one candidate per image, or per tile")
    p.add_argument("--route-map", help="dynamic denoisers: write a PNG of the candidate each tile used")
    p.add_argument("--cost-bias", type=float,
                   help="dynamic denoisers: larger picks cheaper candidates, smaller better ones (default: the "
                        "run's own, 0 for a classifying gate)")
    p.add_argument("--sigma", type=float, help="the noise level of the input (checked against the training noise)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p = command("export", _export, "export a run's final network as TorchScript or ONNX")
    p.add_argument("run_dir")
    p.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript")
    p.add_argument("--out", required=True, help="output folder")
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():  # restores the warning printer when done (main may run in-process)
        warnings.showwarning = _one_line_warning
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"nasden: error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"nasden: stage failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nnasden: interrupted; continue with `nasden resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
