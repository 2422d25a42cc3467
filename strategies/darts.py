"""``darts``: differentiable architecture search (DARTS; MoD-NAS's search strategy) over any space
with op and input choices and width labels.

The strategy owns the architecture parameters (:class:`nasden.core.relaxation.ArchParameters`) with
their own Adam optimiser. The training images are split in two halves: the supernet's weights
learn on one (MSE), the architecture parameters on the other; after ``warmup`` steps of weights
only, the two alternate every step. First order by default; ``order: second`` uses the
finite-difference approximation of the unrolled gradient (DARTS, Eq. 7-8). Both learning rates
follow cosine schedules.

The architecture step minimises ``log MSE`` (a constant minus PSNR · ln(10)/10) plus
``width_penalty`` times the mean |scale| of every width label. The log makes its gradients as
large late in the search as early, so Adam with no weight decay lets alpha decide; a fixed decay
against MSE gradients of ~1e-5 would hold every alpha at zero (bench/darts_vs_nni.py shows it).

Every ``log_every`` steps: softmax(alpha) as ``arch/<label>/<candidate>``, the width scales as
histograms, how consistently the architecture gradients push each label (``arch_consistency/<label>``,
:class:`nasden.core.relaxation.GradientConsistency`; near its noise floor 1/√steps a label has no evidence to
decide on), the derived architecture as text and its FLOPs/pixel; every ``val_every`` steps the
relaxed supernet's validation PSNR (it should not fall as the search goes on). At the end the
derived architecture becomes the run's chosen one (a following ``train`` stage retrains it from
scratch) and is written as ``derived.json`` and ``derived.png``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from nasden.common import distributed
from nasden.common.registry import register_strategy
from nasden.common.storage import save_json
from nasden.core.cost import cost
from nasden.core.initialisation import WEIGHT_INITS, WeightInit, initialise
from nasden.core.ops.mixed import MixedOp
from nasden.core.relaxation import ArchParameters, GradientConsistency, TaylorSaliency, describe
from nasden.core.space import Architecture
from nasden.core.supernet import Supernet
from nasden.data.image_sets import RunData
from nasden.deploy.scoring import psnr_per_image
from nasden.pipeline.plots import network_figure, save_png
from nasden.pipeline.run import StageContext
from nasden.pipeline.schedule import cosine_lr, set_lr
from nasden.pipeline.strategy import Strategy, require_counts, require_learning_rate
from nasden.pipeline.tensorboard_log import add_choice_layout, log_choice_probabilities
from nasden.pipeline.training_loop import TrainingLoop


@dataclass
class DartsConfig:
    """``lr``/``lr_min``: weights (Adam, cosine); ``arch_lr``/``arch_lr_min``: architecture parameters
    (Adam with betas (0.5, 0.999) as in DARTS, cosine). ``warmup``: steps that update weights only.
    ``threshold``/``group``: width derivation (channels with |scale| > threshold, rounded up to a
    multiple of group); ``flops_target`` (FLOPs/pixel) replaces the threshold by the one that makes the
    derived network the widest within the target, so it lands where static networks can be compared.
    ``val_size``: side of the centre crops the supernet is validated on. ``arch_batch``: patches per
    architecture step (default: the weight steps' ``batch``); more patches average out the batch-to-batch noise
    in alpha's gradient (see :class:`nasden.core.relaxation.GradientConsistency`). Sharper decisions (all off by
    default, MoD-NAS's plain softmax): ``temperature`` of the softmax, annealed geometrically to
    ``temperature_min`` over the architecture steps; ``entropy_penalty`` λ adds λ·r·H(softmax α) to the
    architecture loss, r ramping from 0 after the warm-up to 1 at the end (decide late); ``beta_penalty``
    adds β-DARTS's mean logsumexp(α). ``flops_penalty`` β (0: off) prices the candidates (FBNet's loss, MSE × FLOPs^β,
    in log form): it adds β · log of the expected FLOPs per pixel under the op and input softmaxes
    (:meth:`ArchParameters.expected_flops`), so with β = 0.1 a candidate that doubles the network's FLOPs must cut
    its MSE by 7% (0.3 dB) to win; a ``flops_target`` derivation then spends what cheaper ops save on width.
    ``weight_init``: the supernet's weights redrawn before the search (replacing what an earlier stage trained),
    ``he`` or PyTorch's ``default`` (:mod:`nasden.core.initialisation`); ``mixing``: ``sum`` (MoD-NAS Eq. 7: Σ p_k o_k)
    or ``rms`` (Σ p_k o_k / ‖p‖₂: the sum of K independent candidates at uniform p keeps its input's scale instead
    of shrinking √K-fold per layer, and a one-hot p runs its candidate unchanged; :meth:`ArchParameters.relaxed`).
    With both, the coarse levels of a deep BN-free supernet pass their signal and their architecture gradients
    (bench/signal_propagation.py).
    ``sampling``: ``softmax`` (MoD-NAS: every candidate, weighted), ``gumbel``
    (SNAS: each step, weight and architecture steps alike, a Gumbel-softmax sample of every op and input choice at
    the current temperature) or ``gumbel_hard`` (GDAS: the sample made one-hot, straight-through; only the sampled
    path runs, so a step costs one candidate per layer, the weights train that path alone and α learns what its loss
    says about it; validation runs the most probable path; in the benchmarks' few hundred steps such a supernet did
    not train: bench/single_path_training.py). ``shrink`` (P-DARTS's progressive shrinking; empty: off): candidate
    counts ``[k1, k2, ...]``; the architecture steps run in len + 1 equal stages, and at the end of stage i every op
    choice keeps its k_i most probable candidates and drops the rest (they no longer run, so later steps cost less);
    with two candidates left every largest probability is at least 0.5, so ``decided: 0.5`` keeps no op back.
    ``identity_dropout`` (P-DARTS's regularisation; empty: off): one rate per stage (len(shrink) + 1 of them, such as
    P-DARTS's [0.1, 0.4, 0.7]); in training the identity candidate's output is dropped elementwise at the stage's rate,
    which decays linearly to 0 over the stage (the first stage includes the warm-up), so a parameter-free skip cannot
    win on being the easiest path to train early and competes as an equal later.
    ``decided`` (0: plain argmax, MoD-NAS): an op or input whose largest
    probability stays below it derives to the space's reference (first op, previous layer); a mapping sets it per
    kind, ``{op: 0.5, input: 0.7}`` (a kind left out: 0). ``evidence`` (0: off) derives to the reference every op
    or input label whose alpha-gradient consistency stays under ``evidence`` times its noise floor 1/√steps
    (:class:`nasden.core.relaxation.GradientConsistency`): the search measured no push for any candidate there, so its
    argmax is noise, however far the alphas have wandered. It is blind to scale (a steady push however small passes),
    so it belongs beside ``decided``, not instead of it (bench/frontier.py, ``mod_nas_growth_30k_evidence*``).
    ``widths``:
    ``scales`` (MoD-NAS: the channels with the largest |scale|), ``uniform`` (every width label the same
    fraction of its channels, the largest within ``flops_target``: the search decides ops and inputs only) or
    ``per_flop`` (|scale| relative to its layer's mean, per FLOP one channel of the layer costs, the most
    important per FLOP within ``flops_target``) or ``taylor`` (the loss a channel's removal costs, a running
    Taylor estimate from the architecture steps' gradients, per FLOP, within ``flops_target``)."""

    steps: int = 2000
    warmup: int = 500
    lr: float = 1e-3
    lr_min: float = 1e-5
    arch_lr: float = 1e-2
    arch_lr_min: float = 1e-3
    order: Literal["first", "second"] = "first"
    width_penalty: float = 0.05
    threshold: float = 0.5
    flops_target: float | None = None
    decided: float | dict[str, float] = 0.0
    evidence: float = 0.0
    widths: Literal["scales", "uniform", "per_flop", "taylor"] = "scales"
    sampling: Literal["softmax", "gumbel", "gumbel_hard"] = "softmax"
    weight_init: WeightInit = "default"
    mixing: Literal["sum", "rms"] = "sum"
    temperature: float = 1.0
    temperature_min: float | None = None
    entropy_penalty: float = 0.0
    beta_penalty: float = 0.0
    flops_penalty: float = 0.0
    shrink: list[int] = field(default_factory=list)
    identity_dropout: list[float] = field(default_factory=list)
    group: int = 8
    batch: int | None = None
    arch_batch: int | None = None
    log_every: int = 50
    val_every: int = 250
    val_size: int = 128
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        require_counts(self, "steps", "log_every", "val_every", "checkpoint_every", "group")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup: expected 0 <= warmup < steps ({self.steps}), got {self.warmup}")
        require_learning_rate(self.lr, self.lr_min)
        require_learning_rate(self.arch_lr, self.arch_lr_min, "arch_lr")
        if not 0 <= self.width_penalty <= 100 or not 0 <= self.threshold <= 100:
            raise ValueError("width_penalty and threshold: expected numbers in [0, 100]")
        if not 0.01 <= self.temperature <= 100 or not 0.01 <= (self.temperature_min or self.temperature) <= 100:
            raise ValueError("temperature and temperature_min: expected numbers in [0.01, 100]")
        penalties = ("entropy_penalty", "beta_penalty", "flops_penalty", "evidence")
        if not all(0 <= getattr(self, name) <= 100 for name in penalties):
            raise ValueError(f"{', '.join(penalties)}: expected numbers in [0, 100]")
        thresholds = self.decided if isinstance(self.decided, dict) else {"op": self.decided}
        if not set(thresholds) <= {"op", "input"} or not all(
                isinstance(p, (int, float)) and 0 <= p <= 1 for p in thresholds.values()):
            raise ValueError(f"decided: expected a probability in [0, 1], or one per kind "
                             f"({{op: 0.5, input: 0.7}}), got {self.decided}")
        if self.widths not in ("scales", "uniform", "per_flop", "taylor") or (self.widths != "scales"
                                                                               and self.flops_target is None):
            raise ValueError(f"widths: expected 'scales', or 'uniform' / 'per_flop' / 'taylor' with a flops_target, "
                             f"got {self.widths!r}")
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init: expected one of {', '.join(WEIGHT_INITS)}, got {self.weight_init!r}")
        if self.mixing not in ("sum", "rms"):
            raise ValueError(f"mixing: expected 'sum' or 'rms', got {self.mixing!r}")
        if self.sampling not in ("softmax", "gumbel", "gumbel_hard"):
            raise ValueError(f"sampling: expected 'softmax', 'gumbel' or 'gumbel_hard', got {self.sampling!r}")
        if any(k < 1 for k in self.shrink) or any(a <= b for a, b in zip(self.shrink, self.shrink[1:])):
            raise ValueError(f"shrink: expected decreasing candidate counts of at least 1, such as [4, 2], "
                             f"got {self.shrink}")
        if self.identity_dropout and (len(self.identity_dropout) != len(self.shrink) + 1
                                      or not all(0 <= rate < 1 for rate in self.identity_dropout)):
            raise ValueError(f"identity_dropout: expected one rate in [0, 1) per stage ({len(self.shrink) + 1}: one "
                             f"more than shrink's counts), got {self.identity_dropout}")
        if self.flops_target is not None and not 0 < self.flops_target <= 1e12:
            raise ValueError(f"flops_target: expected FLOPs per pixel in (0, 1e12], got {self.flops_target}")
        for name in ("batch", "arch_batch"):
            if getattr(self, name) is not None and not 1 <= getattr(self, name) <= 100_000:
                raise ValueError(f"{name}: expected an integer in [1, 1e5], got {getattr(self, name)}")
        if not 8 <= self.val_size <= 4096:
            raise ValueError(f"val_size: expected 8..4096, got {self.val_size}")


def shrink_steps(cfg: DartsConfig) -> dict[int, int]:
    """The steps at which the search shrinks its op choices (``cfg.shrink``), with the candidates each keeps:
    the ends of len + 1 equal stages of the architecture steps."""
    stages, arch_steps = len(cfg.shrink) + 1, cfg.steps - cfg.warmup
    return {cfg.warmup + arch_steps * (i + 1) // stages: keep for i, keep in enumerate(cfg.shrink)}


def identity_dropout_rate(cfg: DartsConfig, step: int) -> float:
    """``cfg.identity_dropout``'s rate at ``step``: the stage's rate, decaying linearly to 0 over the stage."""
    if not cfg.identity_dropout:
        return 0.0
    bounds = [0, *shrink_steps(cfg), cfg.steps]
    stage = sum(1 for bound in bounds[1:-1] if bound <= step)
    start, end = bounds[stage], bounds[stage + 1]
    return cfg.identity_dropout[stage] * (1 - (step - start) / max(1, end - start))


def annealed_temperature(start: float, end: float | None, progress: float) -> float:
    """The softmax temperature at ``progress`` ∈ [0, 1] of the architecture steps: geometric from ``start``
    to ``end`` (constant when ``end`` is None)."""
    if end is None:
        return start
    return start * (end / start) ** min(1.0, max(0.0, progress))


class Record:
    """Figures kept across a resume: the supernet's validation PSNR by step."""

    def __init__(self) -> None:
        self.val_psnr: list[list[float]] = []  # [step, PSNR] pairs

    def state_dict(self) -> dict[str, Any]:
        return {"val_psnr": self.val_psnr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.val_psnr = [list(item) for item in state["val_psnr"]]


class Search(torch.nn.Module):
    """The supernet and its architecture parameters: what a search step runs and checkpoints. ``noise``: the
    Gumbel noise of the step's sample (None: the plain softmax); ``hard``: run one path (see
    :meth:`ArchParameters.relaxed`)."""

    def __init__(self, supernet: Supernet, arch: ArchParameters, hard: bool = False):
        super().__init__()
        self.supernet, self.arch, self.hard = supernet, arch, hard
        self.noise: dict[str, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        return self.supernet(x, self.arch.relaxed(self.noise, self.hard))

    def weights_forward(self, x: Tensor) -> Tensor:
        """The forward of a weight step: architecture parameters held constant (no gradients to them)."""
        with torch.no_grad():
            arch = self.arch.relaxed(self.noise, self.hard)
        return self.supernet(x, arch)


def unrolled_arch_gradients(search: Search, train_loss: Callable[[], Tensor], arch_loss: Callable[[], Tensor],
                            xi: float) -> Tensor:
    """Set the architecture parameters' ``.grad`` to DARTS's second-order approximation:
    grad_a L_val(w', a) - xi (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps), with the virtual
    step w' = w - xi grad_w L_train(w, a) and w± = w ± eps grad_w' L_val(w', a). Returns L_val(w', a)."""
    weights = [p for p in search.supernet.parameters() if p.requires_grad]
    alphas = list(search.arch.parameters())
    saved = [w.detach().clone() for w in weights]

    def grads(loss: Tensor, wrt: list[Tensor]) -> list[Tensor]:  # averaged over torchrun processes
        found = torch.autograd.grad(loss, wrt, allow_unused=True)
        found = [torch.zeros_like(p) if g is None else g for p, g in zip(wrt, found)]
        distributed.average(found)
        return found

    train_grads = grads(train_loss(), weights)
    with torch.no_grad():
        for w, g in zip(weights, train_grads):
            w.sub_(xi * g)
    val_loss = arch_loss()
    both = grads(val_loss, alphas + weights)
    arch_grad, val_weight_grad = both[: len(alphas)], both[len(alphas):]
    eps = 0.01 / (torch.sqrt(sum((g * g).sum() for g in val_weight_grad)) + 1e-12)
    hessian_terms = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, w0, g in zip(weights, saved, val_weight_grad):
                w.copy_(w0 + sign * eps * g)
        hessian_terms.append(grads(train_loss(), alphas))
    with torch.no_grad():
        for w, w0 in zip(weights, saved):
            w.copy_(w0)
    for a, g, plus, minus in zip(alphas, arch_grad, *hessian_terms):
        a.grad = g - xi * (plus - minus) / (2 * eps)
    return val_loss.detach()


@register_strategy("darts")
class Darts(Strategy):
    """Differentiable search of ops, inputs (dense depth connections) and per-channel widths; derives an
    architecture for a following ``train`` stage."""

    Config = DartsConfig
    summary_keys = frozenset({
        "arch", "derived", "flops_per_pixel", "params", "largest_probability", "supernet_val_psnr",
        "gradient_consistency", "consistency_noise_floor", "no_evidence"})
    provides = frozenset({"arch"})
    space_choices = frozenset({"op", "input", "width"})
    data_parallel = True
    trains_network = True
    runs_every_candidate = True
    smoke_options = {"steps": 6, "warmup": 2, "log_every": 2, "val_every": 3, "checkpoint_every": 2, "val_size": 16}

    def check_data(self, data: RunData) -> None:
        super().check_data(data)
        data.sampler.halves()  # weights and architecture train on disjoint halves: at least two images

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        arch = ArchParameters(run.space, rms_mixing=cfg.mixing == "rms").to(run.device)
        arch.temperature = cfg.temperature
        initialise(run.supernet, cfg.weight_init)  # before a resume restores the checkpoint's weights
        search = Search(run.supernet, arch, hard=cfg.sampling == "gumbel_hard")
        self._entropy_weight = 0.0
        self._saliency = TaylorSaliency(arch)
        self._consistency = GradientConsistency(arch)
        arch_optimizer = torch.optim.Adam(arch.parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999))
        record = Record()
        loop = TrainingLoop(ctx, search, cfg.steps, cfg.lr, cfg.lr_min, cfg.checkpoint_every,
                            parameters=run.supernet.parameters(), log_every=cfg.log_every,
                            companions={"arch_optimizer": arch_optimizer, "record": record,
                                        "saliency": self._saliency, "consistency": self._consistency})
        weight_half, arch_half = run.data.sampler.halves()
        val_noisy, val_clean = (t.to(run.device) for t in run.data.val_batch(cfg.val_size))
        add_choice_layout(run.writer, arch.probabilities())
        shrinking = shrink_steps(cfg)

        # channels-last: oneDNN's and cuDNN's convolutions run a search step ~1.3x faster in it
        run.supernet.to(memory_format=torch.channels_last)

        def batch(sampler: Any, step: int, stream: int, size: int | None = cfg.batch) -> tuple[Tensor, Tensor]:
            noisy, clean = sampler.batch(step, size, stream=stream, shard=ctx.shard)
            return noisy.to(run.device).contiguous(memory_format=torch.channels_last), clean.to(run.device)

        def sample(step: int, stream: int) -> dict[str, Tensor] | None:
            """The Gumbel noise of a step's weight (0) or architecture (1) sample; the same on every process."""
            if cfg.sampling == "softmax":
                return None
            generator = torch.Generator().manual_seed(1_000_003 * ctx.seed + 2 * step + stream)
            return {label: g.to(run.device) for label, g in arch.gumbel_noise(generator).items()}

        dropout_generator = torch.Generator(run.device)
        mixed_ops = [layer for layer in run.supernet.layers.values()
                     if cfg.identity_dropout and isinstance(layer, MixedOp)]
        for layer in mixed_ops:
            layer.generator = dropout_generator

        def regularise(step: int, stream: int) -> None:
            """Set the identity candidates' dropout rate for this step; its draws seeded by (seed, step, stream)."""
            if not mixed_ops:
                return
            dropout_generator.manual_seed(1_000_003 * ctx.seed + 2 * step + stream)
            for layer in mixed_ops:
                layer.identity_dropout = identity_dropout_rate(cfg, step)

        for step in loop:
            if step in shrinking:
                dropped = arch.shrink(shrinking[step])
                if dropped:
                    text = "\n".join(f"{label}: {', '.join(ops)}" for label, ops in dropped.items())
                    run.writer.add_text(f"{ctx.tag}/dropped", text, step)
            noisy, clean = batch(weight_half, step, ctx.seed)
            scalars: dict[str, float] = {}
            if step >= cfg.warmup:
                set_lr(arch_optimizer, cosine_lr(step - cfg.warmup, cfg.steps - cfg.warmup, cfg.arch_lr,
                                                 cfg.arch_lr_min))
                arch_optimizer.zero_grad(set_to_none=True)
                progress = (step - cfg.warmup) / max(1, cfg.steps - 1 - cfg.warmup)
                arch.temperature = annealed_temperature(cfg.temperature, cfg.temperature_min, progress)
                self._entropy_weight = cfg.entropy_penalty * progress
                arch_batch = batch(arch_half, step, ctx.seed + 1, cfg.arch_batch or cfg.batch)
                search.noise = sample(step, 1)
                regularise(step, 1)
                arch_loss = self._architecture_gradients(search, arch_batch, (noisy, clean),
                                                         xi=loop.optimizer.param_groups[0]["lr"])
                ctx.check_loss(arch_loss, step, loop.last_saved)
                self._saliency.update(arch, cfg.width_penalty)
                self._consistency.update(arch)
                arch_optimizer.step()
                scalars["arch_loss"] = arch_loss.item()
            search.noise = sample(step, 0)
            regularise(step, 0)
            loss = F.mse_loss(search.weights_forward(noisy), clean)
            loop.backward(loss, step)
            done = loop.update(step)
            loop.log(done, {"loss": loss.item(), **scalars})
            if loop.due(done, cfg.log_every):
                self._log_architecture(ctx, arch, done)
            if loop.due(done, cfg.val_every):
                record.val_psnr.append([done, round(self._validate(search, val_noisy, val_clean), 4)])
                ctx.scalar("supernet_val_psnr", record.val_psnr[-1][1], done)
        for layer in mixed_ops:
            layer.identity_dropout, layer.generator = 0.0, None
        return self._finish(ctx, arch, record)

    def _architecture_gradients(self, search: Search, arch_batch: tuple[Tensor, Tensor],
                                weight_batch: tuple[Tensor, Tensor], xi: float) -> Tensor:
        """Set the architecture parameters' gradients (first or second order); returns the architecture loss:
        log MSE on the architecture half plus the width penalty (and the sharpening and FLOPs terms that are on)."""
        arch = search.arch

        def architecture_loss() -> Tensor:
            return torch.log(F.mse_loss(search(arch_batch[0]), arch_batch[1])) + \
                self.config.width_penalty * arch.width_penalty() + self._entropy_weight * arch.entropy() + \
                self.config.beta_penalty * arch.beta_regulariser() + self._flops_term(arch)

        if self.config.order == "second":  # the virtual step uses the weights' learning rate xi
            return unrolled_arch_gradients(search, lambda: F.mse_loss(search(weight_batch[0]), weight_batch[1]),
                                           architecture_loss, xi)
        loss = architecture_loss()
        # gradients for alpha only: autograd skips every weight-gradient kernel
        grads = list(torch.autograd.grad(loss, list(arch.parameters())))
        distributed.average(grads)  # over torchrun processes
        for parameter, grad in zip(arch.parameters(), grads):
            parameter.grad = grad
        return loss.detach()

    def _flops_term(self, arch: ArchParameters) -> Tensor | float:
        """β · log E[FLOPs per pixel] (``flops_penalty``), 0 when it is off."""
        beta = self.config.flops_penalty
        return beta * torch.log(arch.expected_flops()) if beta else 0.0

    @torch.no_grad()
    def _validate(self, search: Search, noisy: Tensor, clean: Tensor) -> float:
        """Mean per-image PSNR (the convention of every stage), not the PSNR of the pooled MSE; no sampling noise."""
        search.eval()
        search.noise = None
        value = psnr_per_image(search(noisy), clean).mean().item()
        search.train()
        return value

    def _derive(self, arch: ArchParameters) -> tuple[Architecture, dict[str, list[int]]]:
        cfg = self.config
        return arch.derive(cfg.threshold, cfg.group, cfg.flops_target, cfg.decided, cfg.widths,
                           self._saliency.values, self._consistency.below(cfg.evidence))

    def _log_architecture(self, ctx: StageContext, arch: ArchParameters, step: int) -> None:
        writer = ctx.run.writer
        log_choice_probabilities(writer, arch.probabilities(), step)
        for label, scales in arch.scales.items():
            writer.add_histogram(f"arch/{label}", scales.detach().cpu(), step)
        for label, value in self._consistency.values().items():
            writer.add_scalar(f"arch_consistency/{label}", value, step)
        derived, _ = self._derive(arch)
        writer.add_text(f"{ctx.tag}/derived", describe(ctx.run.space, derived), step)
        ctx.scalar("derived_flops_per_pixel", cost(ctx.run.space, derived).flops_per_pixel, step)

    def _finish(self, ctx: StageContext, arch: ArchParameters, record: Record) -> dict[str, Any]:
        run = ctx.run
        derived, kept = self._derive(arch)
        c = cost(run.space, derived)
        probabilities = arch.probabilities()
        decided = {label: max(p.values()) for label, p in probabilities.items()}
        consistency = {"gradient_consistency": self._consistency.values(),
                       "consistency_noise_floor": self._consistency.noise_floor(),
                       "no_evidence": sorted(self._consistency.below(self.config.evidence))}
        result = {"arch": derived, "flops_per_pixel": c.flops_per_pixel, "params": c.params,
                  "kept_channels": kept, "probabilities": probabilities,
                  "unfold": {name: {"delta": step.delta.item(), "eta": step.eta.item()}
                             for name, step in run.supernet.unfold.items()},
                  "supernet_val_psnr": record.val_psnr, **consistency}
        save_json(result, ctx.dir / "derived.json")
        save_png(network_figure(run.space, derived, f"derived architecture: {c.flops_per_pixel / 1e3:.1f}k "
                                f"FLOPs/pixel, {c.params / 1e3:.0f}k parameters"), ctx.dir / "derived.png")
        run.arch = derived
        ctx.say(f"  derived: {c.flops_per_pixel:.4g} FLOPs/pixel, {c.params} parameters; supernet validation PSNR "
                + " → ".join(f"{p:.2f}" for _, p in record.val_psnr[-4:]) + f" dB; written to {ctx.dir}")
        return {"arch": derived, "flops_per_pixel": c.flops_per_pixel, "params": c.params,
                "largest_probability": decided, "supernet_val_psnr": record.val_psnr,
                **consistency, "derived": f"stages/{ctx.tag}/derived.json"}
