"""``sandwich``: slimmable supernet training with the sandwich rule and in-place synergy (DDS-Net stage 1).

Each step trains n sub-networks: the largest, n-2 random ones and the smallest, accumulating
their gradients. ``distill`` chooses their targets (Eq. 6-7 of DDS-Net; targets stop-gradient):

* ``synergy``: largest → ground truth; random → the largest's output; smallest → the mean of the
  largest's and the random ones' outputs (in-place synergy);
* ``inplace``: largest → ground truth; every other → the largest's output (in-place distillation);
* ``none``: every sub-network → ground truth.

The divergence D defaults to MSE. With L1, every distillation term pushes with full strength
(its gradient is a sign) however close student and teacher already are; three such terms
outweigh the one ground-truth term and, on a BN-free DnCNN, pulled every sub-network to the
identity (output = noisy input). With MSE the pull is proportional to the disagreement.

``distill_ramp: [start, end]`` (fractions of the steps; off by default, as in the paper) brings the
teachers in late: before ``start`` every sub-network learns from the ground truth, from ``end`` on from
its teacher, and in between from the mix ``w · teacher + (1 − w) · ground truth``, ``w`` rising linearly.
Distilling from the first step gives n − 1 of the n sub-networks a teacher that is still learning, so
only the largest's term carries the ground truth while it matters most.

``largest_every: k`` (1 by default, the paper's rule) runs the largest only on every k-th step; the other steps
train the rest alone, each from the ground truth (no teacher ran). It moves training compute from the largest
to the cheaper sub-networks, for a gate that routes most inputs there.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nasden.common.registry import register_strategy
from nasden.core.space import Architecture, SearchSpace
from nasden.core.supernet import Supernet
from nasden.deploy.scoring import arch_psnr
from nasden.pipeline.run import StageContext
from nasden.pipeline.strategy import Strategy, require_counts, require_learning_rate
from nasden.pipeline.training_loop import TrainingLoop

Distill = Literal["synergy", "inplace", "none"]


def sandwich_step(supernet: Supernet, archs: Sequence[Architecture], noisy: Tensor, clean: Tensor, distill: Distill,
                  divergence: Callable[[Tensor, Tensor], Tensor], backward: Callable[[Tensor], None],
                  weight: float = 1.0) -> float:
    """Accumulate the gradients of one sandwich step: each sub-network's divergence from its target
    (:func:`distill_target`, teachers' outputs detached, mixed with the ground truth: ``weight`` of the
    teacher), one backward per sub-network so one graph is in memory at a time; returns the summed loss."""
    outputs: list[Tensor] = []
    total = 0.0
    for index, arch in enumerate(archs):
        out = supernet(noisy, arch)
        target = distill_target(distill, index, len(archs), clean, outputs)
        if weight < 1 and target is not clean:
            target = torch.lerp(clean, target, weight)
        loss = divergence(out, target)
        backward(loss)
        total += loss.item()
        outputs.append(out.detach())
    return total


@dataclass
class SandwichConfig:
    """``n`` sub-networks per step (largest, n-2 random, smallest); ``loss`` is the divergence D;
    ``distill_ramp``: [start, end] fractions of the steps over which the teachers take over the targets;
    ``largest_every``: the largest joins every k-th step only (the module doc)."""

    steps: int = 2000
    n: int = 4
    distill: Distill = "synergy"
    loss: Literal["mse", "l1"] = "mse"
    distill_ramp: list[float] | None = None
    largest_every: int = 1
    lr: float = 1e-3
    lr_min: float = 1e-6
    batch: int | None = None
    checkpoint_every: int = 200
    val_every: int = 500
    val_size: int = 128
    calibration_batches: int = 8

    def __post_init__(self) -> None:
        require_counts(self, "steps", "checkpoint_every", "val_every", "val_size", "calibration_batches",
                       "largest_every")
        if not 2 <= self.n <= 64:
            raise ValueError(f"n: expected 2..64 sub-networks per step, got {self.n}")
        require_learning_rate(self.lr, self.lr_min)
        if self.distill_ramp is not None:
            if len(self.distill_ramp) != 2 or not 0 <= self.distill_ramp[0] <= self.distill_ramp[1] <= 1:
                raise ValueError(f"distill_ramp: expected [start, end] with 0 <= start <= end <= 1, "
                                 f"got {self.distill_ramp}")

    def distill_weight(self, step: int) -> float:
        """The teachers' share of the targets at ``step`` (1 without a ramp)."""
        if self.distill_ramp is None:
            return 1.0
        start, end = (fraction * self.steps for fraction in self.distill_ramp)
        if step < start:
            return 0.0
        return 1.0 if step >= end else (step - start) / (end - start)


def sandwich_archs(space: SearchSpace, n: int, rng: random.Random) -> list[Architecture]:
    """The sandwich rule: [largest, n-2 uniformly random, smallest]."""
    return [space.largest()] + [space.sample(rng) for _ in range(n - 2)] + [space.smallest()]


def step_plan(space: SearchSpace, cfg: SandwichConfig, step: int, seed: int) -> tuple[list[Architecture], Distill]:
    """The sub-networks ``step`` trains and their distillation: the sandwich, less the largest (and so with no
    teacher) on the steps ``largest_every`` skips."""
    archs = sandwich_archs(space, cfg.n, random.Random(seed * 1_000_003 + step))
    if step % cfg.largest_every:
        return archs[1:], "none"
    return archs, cfg.distill


def distill_target(mode: Distill, index: int, n: int, clean: Tensor, previous: Sequence[Tensor]) -> Tensor:
    """Target of sub-network ``index`` (0 largest, n-1 smallest) given the earlier ones' detached outputs."""
    if index == 0 or mode == "none":
        return clean
    if index == n - 1 and mode == "synergy":
        return torch.stack(list(previous)).mean(0)  # Eq. 7: mean of the largest and random outputs
    return previous[0]


@register_strategy("sandwich")
class Sandwich(Strategy):
    """Train a slimmable supernet with the sandwich rule and in-place synergy distillation (DDS-Net stage 1)."""

    Config = SandwichConfig
    summary_keys = frozenset({"steps", "distill", "n", "val_psnr_largest", "val_psnr_smallest"})
    space_choices = frozenset({"width"})
    data_parallel = True
    trains_network = True
    smoke_options = {"steps": 4, "n": 3, "checkpoint_every": 2, "val_every": 2, "val_size": 16}

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        supernet, space = run.supernet.train(), run.space
        loop = TrainingLoop(ctx, supernet, cfg.steps, cfg.lr, cfg.lr_min, cfg.checkpoint_every)
        divergence = F.l1_loss if cfg.loss == "l1" else F.mse_loss
        scores: dict[str, float] = {}
        for step in loop:
            batch = run.data.sampler.batch(step, cfg.batch, stream=ctx.seed, shard=ctx.shard)
            noisy, clean = (t.to(run.device) for t in batch)
            archs, distill = step_plan(space, cfg, step, ctx.seed)
            total = sandwich_step(supernet, archs, noisy, clean, distill, divergence,
                                  lambda loss: loop.backward(loss, step), cfg.distill_weight(step))
            done = loop.update(step)
            loop.log(done, {"loss": total})
            if loop.due(done, cfg.val_every):
                scores = self._validate(ctx, done)
        if loop.resumed_after_end:
            scores = self._validate(ctx, cfg.steps)
        ctx.say(f"  largest {scores['val_psnr_largest']:.2f} dB, smallest {scores['val_psnr_smallest']:.2f} dB")
        ctx.log_subnetwork(space.largest(), cfg.steps, "largest")
        ctx.log_subnetwork(space.smallest(), cfg.steps, "smallest")
        return {"steps": cfg.steps, "distill": cfg.distill, "n": cfg.n, **scores}

    def _validate(self, ctx: StageContext, step: int) -> dict[str, float]:
        run = ctx.run
        noisy, clean = (t.to(run.device) for t in run.data.val_batch(self.config.val_size))
        calibration = run.calibration_batches(self.config.calibration_batches)
        scores = {}
        for name, arch in (("largest", run.space.largest()), ("smallest", run.space.smallest())):
            value = arch_psnr(run.supernet, arch, noisy, clean, calibration).mean().item()
            ctx.scalar(f"val_psnr/{name}", value, step)
            scores[f"val_psnr_{name}"] = round(value, 4)
        return scores
