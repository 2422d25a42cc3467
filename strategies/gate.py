"""``gate``: DDS-Net stage 3, a routing gate over candidates from the routing space.

E candidates are picked from the run's candidate list (progressive slimming or evolution) spread
evenly over FLOPs. Labels are made online from each training patch's PSNR under every candidate:

* ``paper`` (Eq. 11-12): PSNR+ = PSNR(largest) - PSNR(smallest); the smallest if PSNR+ < beta,
  the largest otherwise;
* ``graded``: the cheapest candidate within beta dB of the largest.

Loss (Eq. 13-15): cross-entropy + ((E[FLOPs] - C) / T)^2, with E[FLOPs] = sum_i p_i FLOPs_i under
the gate's softmax (differentiable), C = ``budget_flops`` and T the largest candidate's FLOPs/pixel.
FLOPs here are 2 per multiply-add (the paper counts multiply-adds: halve its budgets).

``gain`` (not in the paper) makes the gate a quality predictor: its outputs regress every candidate's
PSNR minus the largest one's on the patch (Huber loss, dB), so the choice argmax(output_i - b·FLOPs_i/T)
trades predicted dB against FLOPs with one exchange rate b for every input: a patch where a cheap
candidate loses little takes it, one where it loses much does not. The budget C then sets b: the
smallest b whose choices on held-out training patches spend at most C (stored as the network's
``cost_bias``); beta is unused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from nasden.common.registry import register_strategy
from nasden.core.cost import cost
from nasden.core.dynamic import DynamicDenoiser, batchnorm_statistics
from nasden.core.gates import DDSGate, build_gate, check_gate_options
from nasden.core.space import SearchSpace
from nasden.core.specs import dynamic_spec
from nasden.core.supernet import recalibrate_bn
from nasden.deploy.scoring import evaluate_network, psnr_per_image
from nasden.pipeline.run import StageContext
from nasden.pipeline.strategy import Strategy, require_learning_rate
from nasden.pipeline.training_loop import TrainingLoop


@dataclass
class GateConfig:
    """``candidates``: E; the budget C in FLOPs/pixel as ``budget_flops`` or as ``budget_ratio`` of the
    largest candidate's (at least the cheapest's; neither: no complexity loss); ``gate``: any registered gate
    (``nasden ls``): DDS-Net's gate on the supernet's first block (``dds``), ClassPruning's four-block classifier
    (``classifier``) or one a package registers; ``width``: the DDS gate's first-block width ('smallest',
    'largest' or a number); ``hidden``: D of its prediction head, or the classifier's channels;
    ``gate_options``: further keyword arguments of the gate's builder; ``patch``: training patch size."""

    candidates: int = 4
    beta: float = 0.2
    labels: Literal["paper", "graded", "gain"] = "paper"
    gate: str = "dds"
    budget_flops: float | None = None
    budget_ratio: float | None = None
    steps: int = 1000
    lr: float = 1e-3
    lr_min: float = 1e-6
    hidden: int = 32
    width: Literal["smallest", "largest"] | int = "smallest"
    batch: int | None = None
    patch: int | None = None
    checkpoint_every: int = 200
    calibration_batches: int = 8
    gate_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_gate_options(self.gate, self.builder_options())
        if self.budget_flops is not None and self.budget_ratio is not None:
            raise ValueError("budget_flops: give budget_flops or budget_ratio, not both")
        if self.budget_ratio is not None and not 0 < self.budget_ratio <= 1:
            raise ValueError(f"budget_ratio: expected a fraction in (0, 1], got {self.budget_ratio}")
        if not 2 <= self.candidates <= 64:
            raise ValueError(f"candidates: expected 2..64, got {self.candidates}")
        for name in ("steps", "checkpoint_every", "hidden", "calibration_batches"):
            if not 1 <= getattr(self, name) <= 100_000_000:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if not 0 <= self.beta <= 100:
            raise ValueError(f"beta: expected a PSNR threshold in [0, 100] dB, got {self.beta}")
        if self.budget_flops is not None and self.budget_flops <= 0:
            raise ValueError(f"budget_flops: expected a positive number, got {self.budget_flops}")
        require_learning_rate(self.lr, self.lr_min)

    def builder_options(self) -> dict[str, Any]:
        """The keyword arguments of the gate's builder: ``width`` and ``hidden`` for ``dds``, ``hidden`` as the
        classifier's ``channels``, and ``gate_options`` over them."""
        built_in = {"dds": {"width": self.width, "hidden": self.hidden}, "classifier": {"channels": self.hidden}}
        return {**built_in.get(self.gate, {}), **self.gate_options}


def spread_over_flops(candidates: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` entries spread evenly over FLOPs (always the cheapest and the dearest), cheapest first."""
    pool = sorted(candidates, key=lambda c: c["flops_per_pixel"])
    if len(pool) <= count:
        return pool
    low, high = pool[0]["flops_per_pixel"], pool[-1]["flops_per_pixel"]
    chosen: list[dict[str, Any]] = []
    for i in range(count):
        target = low + (high - low) * i / (count - 1)
        rest = [c for c in pool if c not in chosen]
        chosen.append(min(rest, key=lambda c: abs(c["flops_per_pixel"] - target)))
    return sorted(chosen, key=lambda c: c["flops_per_pixel"])


def gate_labels(psnr: Tensor, beta: float, mode: str) -> Tensor:
    """Labels from per-image PSNR ``[N, E]`` (candidates cheapest first)."""
    gain = psnr[:, -1:] - psnr
    if mode == "paper":  # Eq. 12: PSNR+ of largest over smallest
        return torch.where(gain[:, 0] < beta, 0, psnr.shape[1] - 1)
    within = gain <= beta  # the largest itself always qualifies
    return within.float().argmax(1)


def complexity_loss(probabilities: Tensor, flops: Tensor, budget: float, scale: float) -> Tensor:
    """Eq. 14 with the expected FLOPs under the gate's softmax: mean of ((p·F - C) / T)^2."""
    expected = probabilities @ flops
    return ((expected - budget) / scale).pow(2).mean()


@torch.no_grad()
def budget_bias(model: DynamicDenoiser, batches: Sequence[Tensor], budget: float) -> float:
    """The smallest cost bias at which ``model`` spends at most ``budget`` FLOPs/pixel (gate excluded) on
    ``batches``: the FLOPs chosen fall as the bias grows, so bisection finds it."""
    logits = torch.cat([model.gate(b) for b in batches])
    flops = torch.tensor(model.flops, device=logits.device)
    return smallest_bias(lambda bias: float(flops[model.choose(logits, bias)].mean()), budget)


def smallest_bias(spent: Callable[[float], float], budget: float) -> float:
    """The smallest cost bias >= 0 at which ``spent(bias)``, the FLOPs/pixel its choices spend (falling as the bias
    grows), is at most ``budget``, by bisection."""
    low, high = 0.0, 1.0
    if spent(low) <= budget:
        return low
    while spent(high) > budget:
        low, high = high, high * 2
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (low, middle) if spent(middle) <= budget else (middle, high)
    return high


def gate_budget(cfg: GateConfig, low: float, high: float, say: Callable[[str], None]) -> float | None:
    """The budget C in FLOPs/pixel for candidates that cost ``low`` to ``high``. ``budget_flops`` outside that
    range is an error; ``budget_ratio`` of ``high`` below ``low`` (a searched front of candidates less than
    1/ratio apart) is raised to ``low``, and ``budget_flops`` outside that range (the space's range is checked when
    the recipe is parsed) is moved into it, each with a message, so a search's last stage does not fail on its own
    result."""
    if cfg.budget_ratio is not None:
        budget = cfg.budget_ratio * high
        if budget < low:
            say(f"  budget_ratio {cfg.budget_ratio:g} of the dearest candidate ({budget:.6g} FLOPs/pixel) is below "
                f"the cheapest ({low:.6g}): the budget is the cheapest's")
        return max(budget, low)
    if cfg.budget_flops is not None and not low <= cfg.budget_flops <= high:
        budget = min(max(cfg.budget_flops, low), high)
        say(f"  budget_flops {cfg.budget_flops:.6g} is outside the candidates' range [{low:.6g}, {high:.6g}]: the "
            f"budget is {budget:.6g}")
        return budget
    return cfg.budget_flops


@register_strategy("gate")
class Gate(Strategy):
    """Train a routing gate over candidates from the routing space; the result is a dynamic denoiser."""

    Config = GateConfig
    summary_keys = frozenset({
        "candidates", "budget_flops", "gate_flops_per_pixel", "val_psnr", "val_flops_per_pixel", "val_choices"})
    requires = frozenset({"candidates"})
    provides = frozenset({"final"})
    smoke_options = {"candidates": 2, "steps": 4, "checkpoint_every": 2, "calibration_batches": 1}
    smoke_space = {"name": "slimmable", "depth": 3, "channels": 16}
    smoke_stages_before = [{"strategy": "progressive_slimming", "group": 8, "val_images": 1, "val_size": 16}]

    def check_space(self, space: SearchSpace) -> None:
        budget = self.config.budget_flops
        low, high = (cost(space, arch).flops_per_pixel for arch in (space.smallest(), space.largest()))
        if budget is not None and not low <= budget <= high:
            raise ValueError(f"budget_flops: {budget:.6g} FLOPs/pixel is outside what the space's networks cost "
                             f"([{low:.6g}, {high:.6g}])")

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        chosen = spread_over_flops(run.candidates, cfg.candidates)
        flops = torch.tensor([c["flops_per_pixel"] for c in chosen], device=run.device)
        high = float(flops[-1])
        budget = gate_budget(cfg, float(flops[0]), high, ctx.say)
        calibration = run.calibration_batches(cfg.calibration_batches)
        statistics = []
        for c in chosen:
            if calibration:
                recalibrate_bn(run.supernet, c["arch"], calibration)
            statistics.append(batchnorm_statistics(run.supernet))
        gate = build_gate(run.supernet, cfg.gate, len(chosen), **cfg.builder_options())
        dynamic = DynamicDenoiser(gate, run.supernet, [c["arch"] for c in chosen], flops.tolist(),
                                  statistics=statistics).eval()
        networks = dynamic.candidates
        loop = TrainingLoop(ctx, gate, cfg.steps, cfg.lr, cfg.lr_min, cfg.checkpoint_every,
                            parameters=[p for p in gate.parameters() if p.requires_grad])
        gate.train()
        if isinstance(gate, DDSGate):
            gate.stem.eval()  # frozen, from the supernet
        for step in loop:
            noisy, clean = (t.to(run.device)
                            for t in run.data.sampler.batch(step, cfg.batch, stream=ctx.seed, patch=cfg.patch))
            with torch.no_grad():
                psnr = torch.stack([psnr_per_image(net(noisy), clean) for net in networks], 1)
            logits = gate(noisy)
            if cfg.labels == "gain":
                gain = psnr - psnr[:, -1:]
                loss = F.huber_loss(logits, gain)
                scalars = {"loss/gain": loss.item(), "gain_error_db": (logits - gain).abs().mean().item()}
            else:
                labels = gate_labels(psnr, cfg.beta, cfg.labels)
                probabilities = logits.softmax(1)
                ce = F.cross_entropy(logits, labels)
                comp = complexity_loss(probabilities, flops, budget, high) if budget is not None else torch.zeros(())
                loss = ce + comp
                scalars = {"loss/cross_entropy": ce.item(), "loss/complexity": comp.item(),
                           "expected_flops": (probabilities @ flops).mean().item(),
                           "accuracy": (logits.argmax(1) == labels).float().mean().item()}
            loop.backward(loss, step)
            done = loop.update(step)
            loop.log(done, scalars)
            if done % loop.log_every == 0:
                run.writer.add_histogram(f"{ctx.tag}/choices", logits.argmax(1), done)
        gate.eval()
        if cfg.labels == "gain" and budget is not None:
            held_out = [run.data.sampler.batch(i, cfg.batch, stream=ctx.seed + 1, patch=cfg.patch)[0].to(run.device)
                        for i in range(cfg.calibration_batches)]
            dynamic.cost_bias = budget_bias(dynamic, held_out, budget)
            ctx.say(f"  cost bias {dynamic.cost_bias:.4g}: held-out patches spend at most {budget:.4g} FLOPs/pixel")
        spec = dynamic_spec(dynamic)
        run.set_final(dynamic, spec)
        ctx.log_denoised(dynamic, cfg.steps)
        val = evaluate_network(dynamic, run.space, spec, run.data.val, "val")
        run.writer.add_histogram(f"{ctx.tag}/val_choices", torch.repeat_interleave(
            torch.arange(len(chosen)), torch.tensor(val["choices"])), 0)
        ctx.say(f"  validation: PSNR {val['psnr']:.2f} dB at {val['flops_per_pixel']:.4g} FLOPs/pixel "
                f"(choices {val['choices']}; candidates {[round(f) for f in flops.tolist()]})")
        return {"candidates": [{k: c[k] for k in ("flops_per_pixel", "psnr")} for c in chosen],
                "budget_flops": budget, "gate_flops_per_pixel": gate.flops_per_pixel,
                "val_psnr": val["psnr"], "val_flops_per_pixel": val["flops_per_pixel"], "val_choices": val["choices"]}
