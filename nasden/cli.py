"""The ``nasden`` command: search | resume | worker | validate | ls | data | eval | denoise | export."""
from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import torch
import yaml

from nasden.common import distributed
from nasden.common.atomic import atomic_write, check_target
from nasden.common.errors import NasdenError, RunError, StageFailed, UsageError
from nasden.common.registry import GATES, OPS, SPACES, STRATEGIES
from nasden.common.threads import own_cores
from nasden.data.image_sets import evaluation_pairs, load_set
from nasden.data.images import ImageError, image_header, load_image, output_bits, save_image
from nasden.data.noise import NoiseConfig
from nasden.deploy.output_plan import plan_outputs
from nasden.pipeline.preflight import preflight
from nasden.pipeline.recipe import load_recipe

RECOVERY_KEYS = re.compile(r"stages\.\d+\.(lr|lr_min|arch_lr|arch_lr_min|steps|compute)=")
SSIM_WINDOW = 11  # pixels: the side of the SSIM Gaussian window


def _search(args: argparse.Namespace) -> int:
    from nasden.pipeline.run import create_run, execute
    recipe = load_recipe(args.recipe, args.override)
    _check_workers(args.workers)
    preflight(recipe)  # before the run folder is made (under torchrun, on every process, which then refuse alike)
    with distributed.process_group():  # under torchrun: rank 0 makes the run folder, every process runs it
        run_dir = distributed.from_main(lambda: create_run(recipe, Path(args.out) if args.out else Path("runs") / (
            f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}")))
        if distributed.is_main():
            print(f"run folder: {run_dir}  (tensorboard --logdir {run_dir / 'tensorboard'})")
        execute(run_dir, args.quiet, args.workers)
    return 0


def _check_workers(workers: int) -> None:
    if not 1 <= workers <= 256:
        raise UsageError(f"--workers: expected 1..256 processes, got {workers}")


def _run_folder(path: str) -> Path:
    run_dir = Path(path)
    if not (run_dir / "recipe.yaml").exists():
        raise RunError(f"{run_dir}: not a run folder (no recipe.yaml)")
    return run_dir


def _resume(args: argparse.Namespace) -> int:
    from nasden.pipeline.run import execute
    _check_workers(args.workers)
    with distributed.process_group():
        execute(distributed.from_main(lambda: _recover(_run_folder(args.run_dir), args.override)), args.quiet,
                args.workers)
    return 0


def _recover(run_dir: Path, overrides: list[str]) -> Path:
    """Apply ``resume -o`` overrides (learning rates, steps and compute only) to the run's recipe, recorded in it."""
    if not overrides:
        return run_dir
    for assignment in overrides:
        if not RECOVERY_KEYS.match(assignment):
            raise UsageError(f"resume -o {assignment!r}: only stages.N.lr, lr_min, arch_lr, arch_lr_min, steps and "
                              f"compute can change in a run that has started")
    path = run_dir / "recipe.yaml"
    recipe = load_recipe(path, overrides)  # validated with the new values
    header = "".join(line + "\n" for line in path.read_text().splitlines() if line.startswith("#"))
    header += f"# resumed on {time.strftime('%Y-%m-%d %H:%M:%S')} with -o {' -o '.join(overrides)}\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(header + yaml.safe_dump(recipe.to_dict(), sort_keys=False)))
    return run_dir


def _worker(args: argparse.Namespace) -> int:
    from nasden.pipeline.run import StageContext, open_run
    ctx = open_run(_run_folder(args.run_dir), args.quiet)
    stages = ctx.recipe.stages
    takes_workers = [i for i, s in enumerate(stages) if STRATEGIES.get(s.strategy).has_workers]
    if args.stage not in takes_workers:
        raise UsageError(f"{args.run_dir}: stage {args.stage} takes no workers (stages that do: "
                          f"{', '.join(f'{i} ({stages[i].strategy})' for i in takes_workers) or 'none'})")
    if len(ctx.summaries) < args.stage:
        raise UsageError(f"{args.run_dir}: stage {args.stage} has not started; the stages before it must finish first")
    stage = stages[args.stage]
    print(STRATEGIES.get(stage.strategy)(stage.options).work(StageContext(ctx, args.stage, stage.strategy), args.index))
    return 0


def _validate(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, args.override)
    data = preflight(recipe, download=False)  # validate writes nothing, not even a dataset cache
    space = recipe.build_space()
    stages = " → ".join(s.strategy for s in recipe.stages)
    print(f"{args.recipe}: ok: space {space.name!r} ({len(space.nodes)} nodes, {len(space.choices())} choices); "
          f"data {data}; stages {stages}")
    return 0


def _first_sentence(obj: object) -> str:
    """The docstring's first sentence, its wrapped lines joined (``nasden ls`` prints it on one line)."""
    paragraph = " ".join((obj.__doc__ or "").strip().split("\n\n")[0].split())
    end = re.search(r"\.\s+(?=[A-Z])", paragraph)  # "Eq. 2-3" is no sentence end
    return paragraph if end is None else paragraph[: end.start() + 1]


def _ls(args: argparse.Namespace) -> int:
    if args.options:
        from nasden.reference import options_reference
        print(options_reference(), end="")
        return 0
    for title, registry in (("search spaces", SPACES), ("strategies", STRATEGIES), ("gates", GATES), ("ops", OPS)):
        print(f"{title}:")
        for name in registry.names():
            entry = registry.get(name)
            print(f"  {name:<22} {entry.describe() if registry is OPS else _first_sentence(entry)}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from nasden.common.storage import save_json
    from nasden.deploy.denoiser import load
    from nasden.deploy.scoring import markdown_table
    if not (math.isfinite(args.sigma) and 0 <= args.sigma <= 255):
        raise UsageError(f"--sigma: expected a noise level in [0, 255], got {args.sigma}")
    if args.crop is not None and args.crop < SSIM_WINDOW:
        raise UsageError(f"--crop: expected at least {SSIM_WINDOW} pixels (the SSIM window), got {args.crop}")
    if args.json:
        check_target(Path(args.json), args.overwrite)
    model = load(args.model)
    images = load_set(args.data, model.in_channels, "val")
    pairs = evaluation_pairs(images, NoiseConfig(sigma=args.sigma), args.seed, crop=args.crop)
    for name, _, clean in pairs:
        if min(clean.shape[-2:]) < SSIM_WINDOW:
            raise ImageError(f"{name}: {clean.shape[-1]}×{clean.shape[-2]} pixels, smaller than the "
                             f"{SSIM_WINDOW}-pixel SSIM window")
    row = {**model.score(pairs, str(args.data)), "sigma": args.sigma}
    print(markdown_table([row]), end="")
    if args.json:
        save_json(row, Path(args.json))
    return 0


def _denoise(args: argparse.Namespace) -> int:
    from nasden.deploy.denoiser import load
    from nasden.deploy.inference import route_map
    model = load(args.model)
    if args.sigma is not None and (warning := model.noise_warning(args.sigma)):
        warnings.warn(warning, stacklevel=1)
    if args.cost_bias is not None and not math.isfinite(args.cost_bias):
        raise UsageError(f"--cost-bias: expected a finite number, got {args.cost_bias}")
    if (args.route_map or args.cost_bias is not None) and not model.dynamic:
        raise UsageError("--route-map and --cost-bias need a dynamic denoiser (a run that ended with a gate)")
    model.check_tiles(args.tile, args.overlap)
    if args.cost_bias is not None:
        model.network.cost_bias = args.cost_bias
    jobs = plan_outputs(Path(args.input), Path(args.output), Path(args.route_map) if args.route_map else None,
                        args.overwrite)
    skipped = 0
    for job in jobs:
        src, dst = job.source, job.output
        replaced = " (replaced)" if dst.exists() else ""
        try:  # a gray network keeps a colour photo in colour (nasden.data.color); an RGB one gets RGB
            (width, height), source_bits = image_header(src)
            model.check_memory((height, width), args.tile)  # before the image is decoded
            noisy = load_image(src, None if model.in_channels == 1 else model.in_channels)
        except ImageError as err:
            if len(jobs) == 1:
                raise
            print(f"skipped: {err}", file=sys.stderr)
            skipped += 1
            continue
        result = model.run(noisy, args.tile, args.overlap, args.route, args.color, quiet=args.quiet)
        note = (f"  (colour through the gray network: {COLOR_NOTES[args.color]})"
                if noisy.shape[0] == 3 and model.in_channels == 1 else "")
        bits = output_bits(source_bits, result.image.shape[0], dst)
        if bits < source_bits:
            note += f"  (16-bit input written as 8-bit: {dst.suffix or 'this format'} holds 8 bits; use .png or .tif)"
        save_image(result.image, dst, bits)
        if model.dynamic:
            candidates = len(model.network.candidates)
            used = [result.choices.count(i) for i in range(candidates)]
            note += f"  ({result.flops_per_pixel:.4g} FLOPs/pixel; {args.route} routing, tiles per candidate {used})"
            if job.route_map:
                save_image(route_map(result, candidates), job.route_map)
        print(f"{src} → {dst}{replaced}{note}")
    if skipped == len(jobs):
        raise ImageError(f"{args.input}: every image was skipped; nothing was written")
    return 0


COLOR_NOTES = {"channels": "each RGB channel", "luma": "luminance only, chrominance kept"}


def _export(args: argparse.Namespace) -> int:
    from nasden.deploy.denoiser import load
    if args.format.startswith("onnx"):
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise UsageError("ONNX export needs the 'onnx' package: pip install nasden[onnx]") from None
    out = Path(args.out)
    model = load(args.model)
    model.export(out, args.format, args.overwrite)
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from nasden.data import datasets
    if args.action == "ls":
        print(f"{'name':<10} {'files':>5} {'MB':>6}  where                                      licence")
        for name in datasets.names():
            data, where = datasets.manifest(name), datasets.find(name)
            place = str(where) if where else f"not here (nasden data get {name})"
            print(f"{name:<10} {len(data.files):>5} {data.size / 1e6:>6.1f}  {place:<42} {data.licence.split(';')[0]}")
            if data.splits:
                counts = ", ".join(f"{name}:{split} ({len(names)})" for split, names in data.splits.items())
                print(f"{'':<10} splits {counts}; {data.split_rule}")
        return 0
    if not args.name:
        raise UsageError("nasden data get: name a dataset, e.g. nasden data get bsd68 (see nasden data ls)")
    data = datasets.manifest(args.name)
    if args.source:
        folder = datasets.copy_from(data, Path(args.source), datasets.cache_root(), args.overwrite)
    else:
        folder = datasets.locate(args.name, overwrite=args.overwrite)
    print(f"{args.name}: {len(data.files)} files checked in {folder}\n  licence: {data.licence}\n"
          f"  cite: {data.citation}")
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
    workers = {"type": int, "default": 1,
               "help": "local processes for stages that spread their work (evolution trials; default 1)"}
    threads = {"type": int, "help": "PyTorch threads of this process (default: the cores available to it, divided "
                                    "by the processes torchrun starts beside it)"}
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage messages")
    p.add_argument("--workers", **workers)
    p.add_argument("--threads", **threads)
    p = command("resume", _resume, "continue a stopped or killed run where it left off")
    p.add_argument("run_dir")
    p.add_argument("-o", "--override", action="append", default=[], dest="override", metavar="KEY=VALUE",
                   help="change a stage's lr, lr_min, arch_lr, arch_lr_min, steps or compute to recover, "
                        "e.g. -o stages.0.lr=1e-4 (repeatable; recorded in the run's recipe.yaml)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--workers", **workers)
    p.add_argument("--threads", **threads)
    p = command("worker", _worker, "join a running stage that spreads its work over processes (evolution)")
    p.add_argument("run_dir")
    p.add_argument("--stage", type=int, required=True, help="index of the evolution stage in the recipe")
    p.add_argument("--index", type=int, default=1, help="worker number (seeds its sampler; default 1)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--threads", **threads)
    p = command("validate", _validate, "check a recipe without running it")
    p.add_argument("recipe")
    p.add_argument("-o", "--override", **overrides)
    p = command("ls", _ls, "list the registered search spaces, strategies, gates and ops")
    p.add_argument("--options", action="store_true",
                   help="print every option of every space, strategy and gate (Markdown; docs/guide/options.md)")
    p = command("data", _data, "list the named datasets (train400, bsd68, ...) or get one into the user cache")
    p.add_argument("action", choices=["ls", "get"])
    p.add_argument("name", nargs="?", help="the dataset to get")
    p.add_argument("--from", dest="source", metavar="DIR",
                   help="copy the files from this folder (e.g. an offline copy) instead of downloading them")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an incomplete or altered copy in the cache (default: refuse)")
    model = {"help": "a model file (final.pt) or the run folder that holds it"}
    p = command("eval", _eval, "score a trained network on an image folder with synthetic noise")
    p.add_argument("model", **model)
    p.add_argument("--data", required=True,
                   help="image folder, a noisy/clean pair folder, a dataset name (or name:split), or 'builtin'")
    p.add_argument("--sigma", type=float, default=25.0, help="AWGN sigma on the 0-255 scale (default 25)")
    p.add_argument("--crop", type=int, help="centre-crop images to at most this size")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--json", help="also write the scores to this JSON file")
    p.add_argument("--threads", **threads)
    p.add_argument("--overwrite", action="store_true", help="replace the --json file if it exists (default: refuse)")
    p = command("denoise", _denoise, "denoise image files with a trained network")
    p.add_argument("model", **model)
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
    p.add_argument("--color", choices=["channels", "luma"], default="channels",
                   help="a colour photo through a gray network: each RGB channel (default) or the luminance only")
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist (default: refuse)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", **threads)
    p = command("export", _export, "export a trained network as TorchScript or ONNX")
    p.add_argument("model", **model)
    p.add_argument("--format", choices=["torchscript", "onnx", "onnx-candidates"], default="torchscript",
                   help="onnx: one graph with the routing inside; onnx-candidates: the gate and each candidate as "
                        "graphs of their own (dynamic networks; default torchscript)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier export in --out (default: refuse)")
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
        if hasattr(args, "threads"):
            if args.threads is not None and not 1 <= args.threads <= 1024:
                raise UsageError(f"--threads: expected 1..1024, got {args.threads}")
            own_cores(args.threads)
        return args.func(args)
    except NasdenError as err:
        print(f"nasden: error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"nasden: stage failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nnasden: interrupted; continue with `nasden resume RUN_DIR`", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last resort: one line for the user, the traceback in a log
        if _out_of_memory(err):
            print("nasden: error: out of memory; use a smaller batch, patch or tile", file=sys.stderr)
            return 2
        log = _error_log(args)
        print(f"nasden: internal error: {err.__class__.__name__}: {_first_line_of(err)}; the traceback is in {log}",
              file=sys.stderr)
        return 1


def _out_of_memory(err: BaseException) -> bool:
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def _first_line_of(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def _error_log(args: argparse.Namespace) -> Path:
    """Write the current exception's traceback to ``error.log`` in the run folder (else the working or the
    temporary folder) and return its path."""
    run_dir = getattr(args, "run_dir", None) or getattr(args, "model", None) or getattr(args, "out", None)
    paths = [Path(run_dir) / "error.log"] if run_dir and Path(run_dir).is_dir() else []
    for path in [*paths, Path.cwd() / "nasden-error.log", Path(tempfile.gettempdir()) / "nasden-error.log"]:
        try:
            with path.open("a") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} nasden {' '.join(sys.argv[1:])}\n")
                traceback.print_exc(file=f)
            return path
        except OSError:
            continue
    return Path("(nowhere writable)")


if __name__ == "__main__":
    sys.exit(main())
