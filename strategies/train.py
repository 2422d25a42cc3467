"""``train``: train one fixed architecture, from scratch or from the supernet's weights."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from nasden.common.registry import register_strategy
from nasden.core.cost import cost
from nasden.core.extract import extract
from nasden.core.initialisation import WEIGHT_INITS, WeightInit, initialise
from nasden.core.space import Architecture, SearchSpace
from nasden.core.specs import static_spec
from nasden.core.supernet import Supernet
from nasden.data.noise import NoiseConfig
from nasden.data.quality import psnr
from nasden.deploy.inference import denoise
from nasden.deploy.scoring import score
from nasden.pipeline.compute_meter import TRAIN_FLOPS_PER_FORWARD
from nasden.pipeline.run import RunContext, StageContext
from nasden.pipeline.strategy import Strategy, require_counts, require_learning_rate
from nasden.pipeline.tensorboard_log import log_samples
from nasden.pipeline.training_loop import TrainingLoop

IDENTITY_MARGIN_DB = 1.0  # a final network this much worse than doing nothing is refused
DEFAULT_STEPS = 1000


@dataclass
class TrainConfig:
    """``arch``: auto (the architecture an earlier stage chose, else the largest), largest, smallest,
    or an explicit ``{label: value}``. ``init``: scratch (fresh weights) or supernet (its weights).
    ``weight_init``: how fresh weights are drawn, PyTorch's ``default`` or ``he`` (:mod:`nasden.core.initialisation`).
    The learning rate follows a cosine from ``lr`` to ``lr_min``. ``sigma``: train and validate at this
    AWGN level instead of the recipe's noise (MoD-NAS retrains one searched network per σ). ``compute``: a
    training compute in FLOPs instead of ``steps``; the steps follow from the architecture once it is known
    (forward and backward ≈ 3 × its FLOPs/pixel × the pixels of a batch), so that a derived network smaller or
    larger than planned still trains with the compute it was given."""

    steps: int | None = None
    compute: float | None = None
    lr: float = 1e-3
    lr_min: float = 1e-6
    loss: Literal["mse", "l1"] = "mse"
    arch: Literal["auto", "largest", "smallest"] | dict[str, Any] = "auto"
    init: Literal["scratch", "supernet"] = "scratch"
    weight_init: WeightInit = "default"
    batch: int | None = None
    checkpoint_every: int = 200
    val_every: int = 250
    sigma: float | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.compute is not None:
            raise ValueError(f"steps and compute: give one (compute, in FLOPs, sets the steps), got "
                             f"steps={self.steps}, compute={self.compute}")
        if self.compute is not None and not 0 < self.compute <= 1e24:
            raise ValueError(f"compute: expected training FLOPs in (0, 1e24], got {self.compute}")
        if self.steps is None and self.compute is None:
            self.steps = DEFAULT_STEPS
        require_counts(self, "checkpoint_every", "val_every", *(["steps"] if self.compute is None else []))
        require_learning_rate(self.lr, self.lr_min)
        if self.sigma is not None and not 0 <= self.sigma <= 255:
            raise ValueError(f"sigma: expected an AWGN level in [0, 255], got {self.sigma}")
        if self.batch is not None and not 1 <= self.batch <= 100_000:
            raise ValueError(f"batch: expected an integer in [1, 1e5], got {self.batch}")
        if self.weight_init not in WEIGHT_INITS or (self.weight_init != "default" and self.init == "supernet"):
            raise ValueError(f"weight_init: expected one of {', '.join(WEIGHT_INITS)}, for fresh weights (init: "
                             f"scratch), got {self.weight_init!r} with init: {self.init}")


def choose_arch(ctx: RunContext, setting: str | dict[str, Any]) -> Architecture:
    """The architecture ``setting`` names: a given one, the largest, the smallest, or (``auto``) the one an
    earlier stage chose, else the largest."""
    if isinstance(setting, dict):
        return dict(setting)
    if setting == "auto" and ctx.arch is not None:
        return dict(ctx.arch)
    return ctx.space.smallest() if setting == "smallest" else ctx.space.largest()


def check_arch_option(name: str, setting: str | dict[str, Any], space: SearchSpace) -> None:
    """Raise ``ValueError`` naming the option if a given architecture does not fit ``space``."""
    if isinstance(setting, dict):
        try:
            space.check(setting)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None


def validate(model: nn.Module, ctx: StageContext, step: int, val: list[tuple[str, Tensor, Tensor]],
             samples: int = 1) -> float:
    """Mean PSNR on the validation pairs ``val``; logs it and a few denoised samples."""
    run = ctx.run
    multiple = run.space.resolution_multiple
    result = score(model, val, "val", multiple)
    ctx.scalar("val_psnr", result.psnr, step)
    for name, noisy, clean in val[:samples]:
        log_samples(run.writer, f"{ctx.tag}/sample/{name}", noisy, denoise(model, noisy, multiple).image, clean, step)
    model.train()
    return result.psnr


@register_strategy("train")
class Train(Strategy):
    """Train a fixed architecture (Adam, cosine schedule, MSE or L1); it becomes the run's final network."""

    Config = TrainConfig
    summary_keys = frozenset({"arch", "steps", "val_psnr", "flops_per_pixel", "params"})
    provides = frozenset({"arch", "final"})
    data_parallel = True
    trains_network = True
    smoke_options = {"steps": 6, "checkpoint_every": 2, "val_every": 3}

    def check_space(self, space: SearchSpace) -> None:
        check_arch_option("arch", self.config.arch, space)

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        if cfg.arch == "auto" and run.arch is None:
            ctx.say("  no earlier stage chose an architecture (arch: auto): training the largest")
        arch = choose_arch(run, cfg.arch)
        c = cost(run.space, arch)
        steps = cfg.steps if cfg.compute is None else self._steps_for_compute(run, c.flops_per_pixel)
        if cfg.init == "supernet":
            source = run.supernet
        else:
            source = Supernet(run.space)
            initialise(source, cfg.weight_init)
            source.to(run.device)
        model = extract(source, arch).to(run.device).train()
        loop = TrainingLoop(ctx, model, steps, cfg.lr, cfg.lr_min, cfg.checkpoint_every)
        loss_fn = F.mse_loss if cfg.loss == "mse" else F.l1_loss
        val_psnr = math.nan
        sampler, val = run.data.sampler, run.data.val
        if cfg.sigma is not None:
            sampler = sampler.with_noise(NoiseConfig(sigma=cfg.sigma))
            val = run.data.test_set(run.recipe.data.val, cfg.sigma)
        for step in loop:
            noisy, clean = sampler.batch(step, cfg.batch, stream=ctx.seed, shard=ctx.shard)
            loss = loss_fn(model(noisy.to(run.device)), clean.to(run.device))
            loop.backward(loss, step)
            done = loop.update(step)
            loop.log(done, {"loss": loss.item()})
            if loop.due(done, cfg.val_every):
                val_psnr = validate(model, ctx, done, val)
        if loop.resumed_after_end:
            val_psnr = validate(model, ctx, steps, val)
        noisy_psnr = sum(psnr(noisy, clean) for _, noisy, clean in val) / len(val)
        if val_psnr < noisy_psnr - IDENTITY_MARGIN_DB:
            ctx.fail(f"the trained network scores {val_psnr:.2f} dB on the validation images, worse than their noisy "
                     f"input ({noisy_psnr:.2f} dB): training diverged; no final network was written", None)
        model.eval()
        run.arch = arch
        run.set_final(model, static_spec(arch))
        ctx.say(f"  trained {steps} steps: validation PSNR {val_psnr:.2f} dB, {c.flops_per_pixel:.4g} FLOPs/pixel")
        return {"arch": arch, "steps": steps, "val_psnr": round(val_psnr, 4),
                "flops_per_pixel": c.flops_per_pixel, "params": c.params}

    def _steps_for_compute(self, run: RunContext, flops_per_pixel: float) -> int:
        """The steps that spend ``compute`` training a network of ``flops_per_pixel`` (at least one)."""
        data = run.recipe.data
        pixels = (self.config.batch or data.batch) * data.patch ** 2
        return max(1, round(self.config.compute / (TRAIN_FLOPS_PER_FORWARD * flops_per_pixel * pixels)))
