"""``evolution``: multi-objective search over any space with Optuna (NSGA-II by default).

Every label of ``space.choices()`` is a categorical parameter. A trial is scored one-shot with the
current supernet weights (no retraining; BatchNorm recalibrated for the trial's architecture when
the space has BN): validation PSNR (maximised), FLOPs/pixel from the cost model (minimised) and,
with ``latency: true``, the extracted network's measured latency (minimised). ``max_flops`` /
``max_latency_ms`` are constraints (``Trial.set_constraint``, Optuna 5: a trial is feasible when every
value is <= 0), for the samplers that honour them (nsga2, nsga3, tpe, gp).

The study lives in a storage: ``storage`` from the recipe (any Optuna URL: SQLite, PostgreSQL,
MySQL), by default SQLite in the stage folder. A stopped search resumes from it; more processes join
with ``nasden worker RUN_DIR --stage N`` (or ``nasden search ... --workers K``). Workers heartbeat;
a trial whose worker died is marked failed once its heartbeat is stale and retried with the same
architecture, and only completed trials count towards ``trials``. The result is the Pareto front
of the first ``trials`` completed trials, the space's smallest and largest architectures among them:
``pareto.json``, ``pareto.png``, a TensorBoard figure, and the run's candidate list that a following ``gate``
stage routes over.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from nasden.common.errors import StageFailed
from nasden.common.registry import register_strategy
from nasden.common.storage import save_json
from nasden.core.cost import cost, measure_latency
from nasden.core.extract import extract
from nasden.core.space import Architecture
from nasden.deploy.scoring import arch_psnr
from nasden.pipeline.plots import psnr_flops_figure, save_png
from nasden.pipeline.run import StageContext
from nasden.pipeline.strategy import Strategy, helper_processes, require_counts

SAMPLERS = {"nsga2": "NSGAIISampler", "nsga3": "NSGAIIISampler", "tpe": "TPESampler", "random": "RandomSampler",
            "gp": "GPSampler"}
CONSTRAINED = ("nsga2", "nsga3", "tpe", "gp")


@dataclass
class EvolutionConfig:
    """``trials``: completed evaluations; ``sampler`` by name with ``sampler_options`` passed through
    (e.g. ``population_size``); ``storage``: an Optuna storage URL (default SQLite in the stage folder)."""

    trials: int = 200
    sampler: Literal["nsga2", "nsga3", "tpe", "random", "gp"] = "nsga2"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    latency: bool = False
    max_flops: float | None = None
    max_latency_ms: float | None = None
    storage: str | None = None
    val_images: int = 8
    val_size: int = 128
    calibration_batches: int = 8
    latency_size: int = 128
    heartbeat_seconds: int = 10

    def __post_init__(self) -> None:
        require_counts(self, "trials", "val_images", "val_size", "calibration_batches", "latency_size",
                       "heartbeat_seconds")
        if self.max_latency_ms is not None and not self.latency:
            raise ValueError("max_latency_ms: needs latency: true (the latency is then measured per trial)")
        for name in ("max_flops", "max_latency_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: expected a positive number, got {value}")
        if (self.max_flops or self.max_latency_ms) and self.sampler not in CONSTRAINED:
            raise ValueError(f"sampler {self.sampler!r} takes no constraints; use one of {', '.join(CONSTRAINED)}")


def constraints(trial: FrozenTrial) -> list[float]:
    """The constraint values a trial recorded (<= 0: satisfied)."""
    return list(trial.constraints.values())


def make_sampler(config: EvolutionConfig, seed: int) -> optuna.samplers.BaseSampler:
    options: dict[str, Any] = {"seed": seed, **config.sampler_options}
    try:
        return getattr(optuna.samplers, SAMPLERS[config.sampler])(**options)
    except TypeError as err:
        raise ValueError(f"sampler_options for {config.sampler}: {err}") from None


def storage_url(ctx: StageContext, config: EvolutionConfig) -> str:
    return config.storage or f"sqlite:///{(ctx.dir / 'study.db').resolve()}"


def open_study(ctx: StageContext, config: EvolutionConfig, seed: int) -> optuna.Study:
    """The stage's study in its storage (created on first use), with heartbeats and retries of lost trials."""
    ctx.dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # heartbeats are marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            storage_url(ctx, config), heartbeat_interval=config.heartbeat_seconds,
            grace_period=2 * config.heartbeat_seconds,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
    directions = ["maximize", "minimize"] + (["minimize"] if config.latency else [])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name=f"{ctx.run.recipe.name}-{ctx.tag}", storage=storage,
                               sampler=make_sampler(config, seed), directions=directions, load_if_exists=True)


def completed(study: optuna.Study, limit: int | None = None) -> list[FrozenTrial]:
    """The completed trials in the order they were created (the first ``limit`` of them)."""
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    return trials[:limit]


def pareto_front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The feasible trials no other feasible trial dominates, cheapest first."""
    feasible = [t for t in trials if all(c <= 0 for c in constraints(t))]

    def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
        better = [a.values[0] >= b.values[0]] + [x <= y for x, y in zip(a.values[1:], b.values[1:])]
        strictly = [a.values[0] > b.values[0]] + [x < y for x, y in zip(a.values[1:], b.values[1:])]
        return all(better) and any(strictly)

    front = [t for t in feasible if not any(dominates(o, t) for o in feasible if o is not t)]
    return sorted(front, key=lambda t: t.values[1])


class TrialScorer:
    """Scores architectures one-shot with the supernet's weights on a validation batch cached on the device."""

    def __init__(self, ctx: StageContext, config: EvolutionConfig, worker: int = 0):
        run = ctx.run
        self.run, self.config, self.worker = run, config, worker
        self.noisy, self.clean = (t.to(run.device) for t in run.data.val_batch(config.val_size, config.val_images))
        self.calibration = run.calibration_batches(config.calibration_batches)
        self.example = torch.rand(1, run.space.in_channels, config.latency_size, config.latency_size,
                                  device=run.device)

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        space = self.run.space
        arch: Architecture = {label: trial.suggest_categorical(label, list(choice.values))
                              for label, choice in space.choices().items()}
        psnr = arch_psnr(self.run.supernet, arch, self.noisy, self.clean, self.calibration).mean().item()
        flops = cost(space, arch).flops_per_pixel
        values = [psnr, flops]
        if self.config.max_flops:
            trial.set_constraint("flops", flops - self.config.max_flops)
        if self.config.latency:
            latency_ms = 1000 * measure_latency(extract(self.run.supernet, arch).eval(), self.example, runs=5)
            values.append(latency_ms)
            if self.config.max_latency_ms:
                trial.set_constraint("latency_ms", latency_ms - self.config.max_latency_ms)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("worker", self.worker)
        return tuple(values)


def work(ctx: StageContext, config: EvolutionConfig, worker: int = 0) -> optuna.Study:
    """Run trials in this process until the study holds ``trials`` completed ones; the space's smallest and largest
    architectures are among them, so that the front reaches the cheapest architecture and the dearest is scored (a
    front of middling widths alone once left a following gate no candidate under its ``budget_ratio``)."""
    study = open_study(ctx, config, ctx.seed + worker)
    if worker == 0:
        for arch in (ctx.run.space.smallest(), ctx.run.space.largest()):
            study.enqueue_trial(arch, skip_if_exists=True)
    done = len(completed(study))
    if done < config.trials:
        stop = optuna.study.MaxTrialsCallback(config.trials, states=(TrialState.COMPLETE,))
        with ctx.progress(config.trials, done) as bar:
            study.optimize(TrialScorer(ctx, config, worker), n_trials=config.trials - done + 3 * config.trials,
                           callbacks=[stop, lambda *_: bar.update()], catch=())
    return study


@register_strategy("evolution")
class Evolution(Strategy):
    """Multi-objective evolutionary search (Optuna; NSGA-II by default) of PSNR vs FLOPs with supernet weights."""

    Config = EvolutionConfig
    summary_keys = frozenset({"trials", "failed_trials", "front", "pareto", "sampler", "elapsed_seconds"})
    provides = frozenset({"candidates"})
    space_choices = frozenset({"op", "input", "width", "nm"})
    has_workers = True
    transactional_files = frozenset({"study.db"})
    smoke_options = {"trials": 6, "val_images": 1, "val_size": 16, "calibration_batches": 1,
                     "sampler_options": {"population_size": 4}}

    def work(self, ctx: StageContext, worker: int) -> str:
        study = work(ctx, self.config, worker)
        return f"worker {worker}: the study holds {len(study.trials)} trials"

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        started = time.perf_counter()
        with helper_processes(ctx):
            study = work(ctx, cfg)
        trials = completed(study, cfg.trials)
        front = pareto_front(trials)
        if not front:
            raise StageFailed(f"stage {ctx.index} (evolution): no trial met the constraints (max_flops "
                              f"{cfg.max_flops}, max_latency_ms {cfg.max_latency_ms}); loosen them")
        seconds = time.perf_counter() - started
        entries = [{"arch": t.user_attrs["arch"], "psnr": round(t.values[0], 4), "flops_per_pixel": t.values[1],
                    **({"latency_ms": round(t.values[2], 3)} if cfg.latency else {}), "trial": t.number}
                   for t in front]
        run.candidates = [{k: e[k] for k in ("arch", "flops_per_pixel", "psnr")} for e in entries]
        save_json(entries, ctx.dir / "pareto.json")
        figure = psnr_flops_figure({"Pareto front": [(e["flops_per_pixel"], e["psnr"]) for e in entries]},
                                   f"evolution ({cfg.sampler}, {len(trials)} trials)")
        figure.axes[0].scatter([t.values[1] / 1e3 for t in trials], [t.values[0] for t in trials], s=6, alpha=0.4,
                               color="grey", label="trials")
        figure.axes[0].legend()
        save_png(figure, ctx.dir / "pareto.png")
        run.writer.add_figure(f"{ctx.tag}/pareto_front", figure, 0)
        failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        ctx.say(f"  {len(trials)} trials ({failed} failed and retried), Pareto front of {len(front)} from "
                f"{entries[0]['flops_per_pixel']:.4g} to {entries[-1]['flops_per_pixel']:.4g} FLOPs/pixel")
        return {"trials": len(trials), "failed_trials": failed, "sampler": cfg.sampler, "pareto": "pareto.json",
                "front": [{k: v for k, v in e.items() if k != "arch"} for e in entries],
                "elapsed_seconds": round(seconds, 3)}
