"""ClassPruning's three stages (Zhou et al., Sec. 3.3-3.4) on a space with one N:M label (``nm_branches``).

* ``classifier_pretrain`` (stage 1): the difficulty classifier on pseudo labels (Eq. 2-3,
  :mod:`nasden.data.difficulty`) with cross-entropy; Adam, cosine lr 1e-3 → 1e-6.
* ``branch_train`` (stage 2): the classifier frozen, every image runs through every branch and the
  branches learn from L_W = sum_i p_i(y) |f_i(y) - x|_1 (Eq. 6); Adam, lr 1e-4 → 1e-6. With
  ``dense_warmup`` (not in the paper, which leaves the base network's initialisation open), the first
  fraction of the steps trains the densest branch alone on every image, and the sparse branches join after.
  With ``uniform_mix`` u (not in the paper) the branch weights are (1 - u) p_i + u / L: a confident
  classifier gives each branch only its own class's images, and u > 0 lets every branch learn from all of them.
  With ``skip_below`` (not in the paper, which runs every branch on every image) the image-branch pairs whose
  weight is below it are not run, so a step costs about one branch per image once the classifier is confident.
* ``joint_finetune`` (stage 3): everything trains on L_F = w1 L_W + w2 L_E + w3 L_C (Eq. 4-7) with
  L_E the entropy of p and L_C = sum_i p_i C_i, C_i the branch's FLOPs relative to the densest;
  Adam, lr 1e-5 → 1e-7. The paper gives no loss weights; the defaults (1, 1e-4, 1e-3) weigh a
  branch's cost against its L1 so that 0.75 of the relative cost buys about 0.3 dB at sigma 25.

Class i routes to the i-th cheapest branch (1:4, 2:4, 4:4). Stages 2 and 3 train the masks with
SR-STE (``gradient: ste`` or ``masked`` for the ablation) and leave the run a dynamic denoiser:
the classifier and the branches as one shared weight set (each branch is the dense weights under its
N:M mask, with its own BatchNorm).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.common.registry import register_strategy
from nasden.core.cost import cost
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.gates import classifier_gate
from nasden.core.ops.nm import NMGradient, density, set_nm_gradient
from nasden.core.space import Architecture, SearchSpace
from nasden.core.specs import dynamic_spec
from nasden.core.supernet import Supernet
from nasden.data.difficulty import median_variances, pseudo_labelled, residual_variance
from nasden.deploy.scoring import evaluate_network, score
from nasden.pipeline.run import RunContext, StageContext
from nasden.pipeline.strategy import Strategy, require_counts, require_learning_rate
from nasden.pipeline.training_loop import TrainingLoop

SMOKE_SPACE = {"name": "nm_branches", "depth": 3, "channels": 8}


def branch_archs(space: SearchSpace) -> dict[str, Architecture]:
    """Pattern → architecture for each N:M pattern of the space's single ``nm`` label, sparsest (cheapest) first."""
    labels = [c for c in space.choices().values() if c.kind == "nm"]
    if len(labels) != 1:  # checked when the recipe is parsed (check_space)
        raise ValueError(f"space: ClassPruning needs a space with exactly one N:M label (e.g. nm_branches); "
                         f"{space.name!r} has {len(labels)}")
    choice = labels[0]
    base = space.largest()

    return {pattern: {**base, choice.label: pattern} for pattern in sorted(choice.values, key=density)}


def branch_l1(supernet: Supernet, archs: list[Architecture], noisy: Tensor, clean: Tensor,
              weights: Tensor | None = None, skip_below: float = 0.0) -> Tensor:
    """|f_i(y) - x|_1 (mean over pixels) of every image under every branch: ``[B, L]``. With ``weights``
    (``[B, L]``), the image-branch pairs weighing less than ``skip_below`` are not run and read 0."""
    l1 = noisy.new_zeros(noisy.shape[0], len(archs))
    for i, arch in enumerate(archs):
        if weights is None or not skip_below:
            rows = slice(None)  # every image, without copying the batch
        elif not (rows := weights[:, i] >= skip_below).any():
            continue
        l1[rows, i] = (supernet(noisy[rows], arch) - clean[rows]).abs().flatten(1).mean(1)
    return l1


def branch_weights(probabilities: Tensor, uniform_mix: float) -> Tensor:
    """The weights of the branches' L1 in L_W: ``(1 - uniform_mix) p_i + uniform_mix / L`` (Eq. 6 at 0)."""
    return (1 - uniform_mix) * probabilities + uniform_mix / probabilities.shape[1]


def entropy(probabilities: Tensor) -> Tensor:
    """L_E (Eq. 4): the mean entropy of the class probabilities."""
    return -(probabilities * probabilities.clamp(min=1e-12).log()).sum(1).mean()


def branch_denoiser(run: RunContext) -> tuple[DynamicDenoiser, dict[str, Any]]:
    """The classifier and the branches as a copy of the supernet's shared weights; the spec that rebuilds them."""
    archs = list(branch_archs(run.space).values())
    flops = [cost(run.space, arch).flops_per_pixel for arch in archs]
    dynamic = DynamicDenoiser(copy.deepcopy(run.classifier), run.supernet, archs, flops).eval()
    return dynamic, dynamic_spec(dynamic)


@dataclass
class ClassifierConfig:
    """``channels`` / ``stride``: the classifier's blocks; ``pool_batches``: training batches whose
    residual variances set the class medians."""

    steps: int = 2000
    lr: float = 1e-3
    lr_min: float = 1e-6
    channels: int = 64
    stride: int = 2
    batch: int | None = None
    patch: int | None = None
    pool_batches: int = 64
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        require_counts(self, "steps", "channels", "pool_batches", "checkpoint_every")
        require_learning_rate(self.lr, self.lr_min)
        if not 1 <= self.stride <= 4:
            raise ValueError(f"stride: expected 1..4, got {self.stride}")


@register_strategy("classifier_pretrain")
class ClassifierPretrain(Strategy):
    """ClassPruning stage 1: train the difficulty classifier on pseudo labels (Eq. 2-3) with cross-entropy."""

    Config = ClassifierConfig
    summary_keys = frozenset({"steps", "median_sigmas", "held_out_accuracy", "gate_flops_per_pixel"})
    provides = frozenset({"classifier"})
    space_choices = frozenset({"nm"})
    smoke_options = {"steps": 4, "checkpoint_every": 2, "channels": 8, "pool_batches": 2}
    smoke_space = SMOKE_SPACE

    def check_space(self, space: SearchSpace) -> None:
        branch_archs(space)

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        archs = branch_archs(run.space)
        sampler = run.data.sampler
        pool = [sampler.batch(i, cfg.batch, stream=ctx.seed + 1, patch=cfg.patch) for i in range(cfg.pool_batches)]
        medians = median_variances(torch.cat([residual_variance(n, c) for n, c in pool]), len(archs)).to(run.device)
        gate = classifier_gate(run.supernet, len(archs), cfg.channels, cfg.stride).train()
        loop = TrainingLoop(ctx, gate, cfg.steps, cfg.lr, cfg.lr_min, cfg.checkpoint_every)
        for step in loop:
            noisy, clean = (t.to(run.device) for t in sampler.batch(step, cfg.batch, stream=ctx.seed, patch=cfg.patch))
            inputs, labels = pseudo_labelled(noisy, clean, medians)
            logits = gate(inputs)
            loss = F.cross_entropy(logits, labels)
            loop.backward(loss, step)
            done = loop.update(step)
            loop.log(done, {"loss/cross_entropy": loss.item(),
                            "accuracy": (logits.argmax(1) == labels).float().mean().item()})
        gate.eval()
        with torch.no_grad():  # held-out pseudo-labelled patches (a stream of their own)
            held_out = [pseudo_labelled(*(t.to(run.device) for t in sampler.batch(i, cfg.batch, stream=ctx.seed + 2,
                                                                                  patch=cfg.patch)), medians)
                        for i in range(8)]
            accuracy = torch.cat([gate(x).argmax(1) == y for x, y in held_out]).float().mean().item()
        run.set_classifier(gate)
        sigmas = [round(255 * math.sqrt(v), 3) for v in medians.tolist()]
        ctx.say(f"  class medians sigma {sigmas}; held-out pseudo-label accuracy {accuracy:.3f}")
        return {"steps": cfg.steps, "median_sigmas": sigmas, "held_out_accuracy": round(accuracy, 4),
                "gate_flops_per_pixel": gate.flops_per_pixel}


@dataclass
class BranchConfig:
    """``gradient``: how the N:M masks are trained through (sr_ste, ste, masked) with SR-STE ``decay``;
    ``dense_warmup``: the fraction of the steps that trains the densest branch alone, on |f(y) - x|_1;
    ``uniform_mix``: u in the branch weights (1 - u) p_i + u / L of the weighted L1 (0: the paper's Eq. 6);
    ``skip_below``: image-branch pairs of a smaller weight are not run (each would add less than ``skip_below``
    times its L1): with a confident classifier a step then costs about one branch per image instead of every one."""

    steps: int = 2000
    lr: float = 1e-4
    lr_min: float = 1e-6
    gradient: Literal["sr_ste", "ste", "masked"] = "sr_ste"
    decay: float = 2e-4
    dense_warmup: float = 0.0
    uniform_mix: float = 0.0
    skip_below: float = 0.0
    batch: int | None = None
    checkpoint_every: int = 200
    val_every: int = 500

    def __post_init__(self) -> None:
        require_counts(self, "steps", "checkpoint_every", "val_every")
        require_learning_rate(self.lr, self.lr_min)
        NMGradient(self.gradient, self.decay)
        if not 0 <= self.dense_warmup < 1:
            raise ValueError(f"dense_warmup: expected a fraction of the steps in [0, 1), got {self.dense_warmup}")
        if not 0 <= self.uniform_mix <= 1:
            raise ValueError(f"uniform_mix: expected a weight in [0, 1], got {self.uniform_mix}")
        if not 0 <= self.skip_below < 1:
            raise ValueError(f"skip_below: expected a weight in [0, 1), got {self.skip_below}")


@dataclass
class JointConfig(BranchConfig):
    """L_F = ``w_reconstruction`` L_W + ``w_entropy`` L_E + ``w_cost`` L_C (Eq. 7)."""

    lr: float = 1e-5
    lr_min: float = 1e-7
    w_reconstruction: float = 1.0
    w_entropy: float = 1e-4
    w_cost: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dense_warmup:
            raise ValueError("dense_warmup: a branch_train option (joint_finetune trains every branch throughout)")
        for name in ("w_reconstruction", "w_entropy", "w_cost"):
            if not 0 <= getattr(self, name) <= 1e6:
                raise ValueError(f"{name}: expected a loss weight in [0, 1e6], got {getattr(self, name)}")


class _BranchStage(Strategy):
    """Shared loop of stages 2 and 3: every branch runs on every image; ends with the dynamic denoiser."""

    trains_network = True

    summary_keys = frozenset({"steps", "gradient", "val_psnr", "val_flops_per_pixel", "val_flops_ratio", "val_shares",
                              "branch_val_psnr", "branch_flops_per_pixel"})
    requires = frozenset({"classifier"})
    provides = frozenset({"final"})
    space_choices = frozenset({"nm"})
    smoke_space = SMOKE_SPACE
    joint: bool = False

    def check_space(self, space: SearchSpace) -> None:
        branch_archs(space)

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        branches = branch_archs(run.space)
        names, archs = list(branches), list(branches.values())
        costs = torch.tensor([cost(run.space, a).flops_per_pixel for a in archs], device=run.device)
        costs = costs / costs.max()
        gate, supernet = run.classifier, run.supernet.train()
        set_nm_gradient(supernet, NMGradient(cfg.gradient, cfg.decay))
        gate.requires_grad_(self.joint)
        gate.train(self.joint)
        trained = nn.ModuleDict({"supernet": supernet, "gate": gate}) if self.joint else supernet
        loop = TrainingLoop(ctx, trained, cfg.steps, cfg.lr, cfg.lr_min, cfg.checkpoint_every)
        warmup = int(cfg.dense_warmup * cfg.steps)
        summary: dict[str, Any] = {}
        for step in loop:
            noisy, clean = (t.to(run.device) for t in run.data.sampler.batch(step, cfg.batch, stream=ctx.seed))
            with torch.set_grad_enabled(self.joint):
                probabilities = gate(noisy).softmax(1)
            if step < warmup:  # the densest branch alone, on every image
                weighted = branch_l1(supernet, archs[-1:], noisy, clean).mean()
            else:
                weights = branch_weights(probabilities, cfg.uniform_mix)
                l1 = branch_l1(supernet, archs, noisy, clean, weights, cfg.skip_below)
                weighted = (weights * l1).sum(1).mean()
            terms = {"loss/weighted_l1": weighted}
            if self.joint:
                terms.update({"loss/entropy": entropy(probabilities), "loss/cost": (probabilities @ costs).mean()})
                loss = cfg.w_reconstruction * weighted + cfg.w_entropy * terms["loss/entropy"] \
                    + cfg.w_cost * terms["loss/cost"]
            else:
                loss = weighted
            loop.backward(loss, step)
            done = loop.update(step)
            mean_p = probabilities.detach().mean(0).tolist()
            loop.log(done, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                            **{f"probability/{name}": p for name, p in zip(names, mean_p)}})
            if loop.due(done, cfg.val_every):
                summary = self._validate(ctx, done, names)
        if loop.resumed_after_end:
            summary = self._validate(ctx, cfg.steps, names)
        gate.requires_grad_(True)
        gate.eval()
        if ctx.run.final is not None:
            ctx.log_denoised(ctx.run.final, cfg.steps)
        return {"steps": cfg.steps, "gradient": cfg.gradient, **summary}

    def _validate(self, ctx: StageContext, step: int, names: list[str]) -> dict[str, Any]:
        """Score the dynamic denoiser and each branch alone on the validation images; make it the final network."""
        run = ctx.run
        dynamic, spec = branch_denoiser(run)
        row = evaluate_network(dynamic, run.space, spec, run.data.val, "val")
        branch_psnr = {name: round(score(net, run.data.val, "val").psnr, 4)
                       for name, net in zip(names, dynamic.candidates)}
        flops_ratio = row["flops_per_pixel"] / max(dynamic.flops)
        ctx.scalar("val_psnr", row["psnr"], step)
        ctx.scalar("val_flops_ratio", flops_ratio, step)
        for name, share in zip(names, row["shares"]):
            ctx.scalar(f"val_share/{name}", share, step)
        run.set_final(dynamic, spec)
        ctx.say(f"  step {step}: val PSNR {row['psnr']:.2f} dB at {100 * flops_ratio:.1f}% of the dense FLOPs, "
                f"shares {dict(zip(names, [round(s, 2) for s in row['shares']]))}; branches alone {branch_psnr}")
        return {"val_psnr": row["psnr"], "val_flops_per_pixel": row["flops_per_pixel"],
                "val_flops_ratio": round(flops_ratio, 4), "val_shares": dict(zip(names, row["shares"])),
                "branch_val_psnr": branch_psnr, "branch_flops_per_pixel": dict(zip(names, dynamic.flops))}


@register_strategy("branch_train")
class BranchTrain(_BranchStage):
    """ClassPruning stage 2: the classifier frozen, train the N:M branches on the weighted L1 (Eq. 6)."""

    Config = BranchConfig
    smoke_options = {"steps": 4, "checkpoint_every": 2, "val_every": 2}
    smoke_stages_before = [{"strategy": "classifier_pretrain", **ClassifierPretrain.smoke_options}]


@register_strategy("joint_finetune")
class JointFinetune(_BranchStage):
    """ClassPruning stage 3: fine-tune classifier and branches on L_F = w1 L_W + w2 L_E + w3 L_C (Eq. 7)."""

    Config = JointConfig
    joint = True
    smoke_options = {"steps": 4, "checkpoint_every": 2, "val_every": 2}
    smoke_stages_before = [*BranchTrain.smoke_stages_before, {"strategy": "branch_train", **BranchTrain.smoke_options}]
