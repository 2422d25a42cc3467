"""Continuous relaxation of a space for differentiable search, and derivation of a discrete architecture.

One parameter per label: logits ``alpha`` for op and input choices (the relaxed value is
``softmax(alpha / temperature)``, MoD-NAS Eq. 7 and 11 at temperature 1, or a Gumbel-softmax sample of it)
and one scale per output channel for width choices (the relaxed value multiplies the layer's output channels,
Eq. 10). N:M choices are not relaxed; they stay at their densest pattern. A search may drop candidates as it goes
(:meth:`ArchParameters.shrink`, P-DARTS): a dropped candidate's probability is 0 from then on, so it no longer runs
and no longer competes. Derivation (Eq. 9-10): argmax op, the
single most probable input, and per width label ``k`` = the number of channels whose scale magnitude
exceeds ``threshold``, rounded up to a multiple of ``group`` (the top-k channels are listed in
``derived.json``; extraction, and so ``train: {init: supernet}``, takes the first k, as every width
choice does: retrained from scratch only ``k`` matters, inherited the first k channels' weights start
the training).
"""
from __future__ import annotations

import math
from typing import Any, Collection, Mapping

import torch
from torch import Tensor, nn

from nasden.core.cost import cost
from nasden.core.shapes import chosen_input, chosen_op, chosen_width, live_nodes
from nasden.core.space import Architecture, SearchSpace


class ArchParameters(nn.Module):
    """The architecture parameters of a space: ``alphas`` per op/input label, ``scales`` per width label, and
    ``active`` per op/input label (a boolean buffer: the candidates still in the search)."""

    def __init__(self, space: SearchSpace, init_std: float = 1e-3, rms_mixing: bool = False):
        super().__init__()
        self.space, self.rms_mixing = space, rms_mixing
        choices = space.choices()
        self.op_labels = {label for label, choice in choices.items() if choice.kind == "op"}
        self._pricing: tuple[float, dict[str, Tensor]] | None = None  # computed by _prices when first asked
        # N:M patterns are not relaxed: they stay at their densest (a ClassPruning stage decides them)
        self.fixed = {label: choice.largest() for label, choice in choices.items() if choice.kind == "nm"}
        self.alphas = nn.ParameterDict({
            label: nn.Parameter(init_std * torch.randn(len(choice.values)))
            for label, choice in choices.items() if choice.kind in ("op", "input")
        })
        self.scales = nn.ParameterDict({
            label: nn.Parameter(torch.ones(space.nodes[choice.nodes[0]].channels))
            for label, choice in choices.items() if choice.kind == "width"
        })
        self.active = nn.Module()  # buffers, so a checkpoint keeps what a progressive search has dropped
        for label, alpha in self.alphas.items():
            self.active.register_buffer(label, torch.ones(len(alpha), dtype=torch.bool))
        self.temperature = 1.0  # of the softmax; a search may anneal it towards 0 to sharpen its decisions

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """A checkpoint from before progressive shrinking has no ``active`` masks: every candidate is active."""
        for label, alpha in self.alphas.items():
            state_dict.setdefault(f"{prefix}active.{label}", torch.ones(len(alpha), dtype=torch.bool))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def relaxed(self, noise: Mapping[str, Tensor] | None = None, hard: bool = False) -> Architecture:
        """The relaxed architecture the supernet runs: probabilities and per-channel scales.

        With ``noise`` (:meth:`gumbel_noise`) each op and input choice is a Gumbel-softmax sample,
        softmax((alpha + g) / temperature) (SNAS). ``hard`` makes it one-hot at its largest entry in the forward
        pass while its gradient stays the soft one's (GDAS's straight-through estimator): the supernet runs one
        path, the sampled one, or without noise the most probable one, and alpha's gradient reaches each choice
        through the weight of the candidate that ran. With ``rms_mixing`` an op choice's weights are divided by
        their L2 norm: the candidates' independent outputs then sum to their own scale, not to 1/√K of it."""
        arch: Architecture = {}
        for label in self.alphas:
            soft = torch.softmax(self.logits(label, None if noise is None else noise[label]) / self.temperature, 0)
            if self.rms_mixing and not hard and label in self.op_labels:
                soft = soft / soft.norm()
            if hard:
                one_hot = torch.zeros_like(soft).scatter_(0, soft.detach().argmax().view(1), 1.0)
                soft = one_hot + soft - soft.detach()
            arch[label] = soft
        arch.update(self.scales)
        arch.update(self.fixed)
        return arch

    def logits(self, label: str, noise: Tensor | None = None) -> Tensor:
        """A label's alphas (plus ``noise``), -inf for the candidates dropped from the search."""
        alpha = self.alphas[label] if noise is None else self.alphas[label] + noise
        return alpha.masked_fill(~self.active.get_buffer(label), -math.inf)

    @torch.no_grad()
    def shrink(self, keep: int, kind: str = "op") -> dict[str, list[str]]:
        """P-DARTS's progressive shrinking: every ``kind`` choice keeps its ``keep`` most probable active candidates
        (ties: the earlier) and drops the rest for good. Returns the dropped candidates' names per label."""
        choices = self.space.choices()
        dropped = {}
        for label in self.alphas:
            active = self.active.get_buffer(label)
            if choices[label].kind != kind or int(active.sum()) <= keep:
                continue
            order = torch.argsort(self.logits(label), descending=True, stable=True).tolist()
            dropped[label] = [str(choices[label].values[i]) for i in order[keep:] if active[i]]
            active[order[keep:]] = False
        return dropped

    def gumbel_noise(self, generator: torch.Generator) -> dict[str, Tensor]:
        """Standard Gumbel noise, -log(E) with E ~ Exp(1), one per candidate of every op and input choice (on
        the CPU, from ``generator``, so a seeded draw is the same on every device and after a resume)."""
        return {label: -torch.empty(len(alpha)).exponential_(generator=generator).clamp_min(1e-20).log()
                for label, alpha in self.alphas.items()}

    def probabilities(self) -> dict[str, dict[str, float]]:
        """softmax(alpha) per label, by candidate name (op name or input node); 0 for a dropped candidate."""
        choices = self.space.choices()
        return {label: dict(zip(map(str, choices[label].values),
                                torch.softmax(self.logits(label).detach(), 0).tolist())) for label in self.alphas}

    def entropy(self) -> Tensor | float:
        """Mean entropy of the op and input softmaxes over their active candidates (at temperature 1): high while a
        label is undecided."""
        terms = []
        for label in self.alphas:
            log_p = torch.log_softmax(self.logits(label), 0).masked_fill(~self.active.get_buffer(label), 0.0)
            terms.append(-(log_p.exp() * log_p).sum())
        return sum(terms, 0.0) / max(1, len(terms))

    def beta_regulariser(self) -> Tensor | float:
        """β-DARTS's regulariser: the mean over labels of logsumexp(alpha). Its gradient is softmax(alpha), so
        descending it pulls every alpha down in proportion to its probability, which keeps the alphas of
        a label close and stops parameter-free candidates from winning early on their own."""
        terms = [torch.logsumexp(self.logits(label), 0) for label in self.alphas]
        return sum(terms, 0.0) / max(1, len(terms))

    def expected_flops(self) -> Tensor:
        """The expected FLOPs per pixel of the relaxed op and input choices (softmax at the current temperature): the
        space's largest architecture plus, per choice, its candidates' price (:meth:`candidate_flops`) weighted by
        their probabilities. Linear: two choices' changes add up, and widths stay at their widest."""
        reference, flops = self._prices()
        changes = [(torch.softmax(self.logits(label) / self.temperature, 0)
                    * (flops[label].to(self.alphas[label].device) - reference)).sum() for label in flops]
        return reference + sum(changes, torch.zeros(()))  # a 0-dim CPU tensor adds to one on any device

    def candidate_flops(self) -> dict[str, Tensor]:
        """Per op and input choice: the FLOPs per pixel of the space's largest architecture with that choice set to each
        of its candidates."""
        return self._prices()[1]

    def _prices(self) -> tuple[float, dict[str, Tensor]]:
        """The largest architecture's FLOPs per pixel and :meth:`candidate_flops`, computed once."""
        if self._pricing is None:
            largest, choices = self.space.largest(), self.space.choices()
            self._pricing = (cost(self.space, largest).flops_per_pixel, {
                label: torch.tensor([cost(self.space, {**largest, label: value}).flops_per_pixel
                                     for value in choices[label].values]) for label in self.alphas})
        return self._pricing

    def width_penalty(self) -> Tensor | float:
        """Sum over width labels of the mean |scale| (the L1 term that drives unneeded channels to zero)."""
        return sum((scales.abs().mean() for scales in self.scales.values()), 0.0)

    def derive(self, threshold: float, group: int = 8, flops_target: float | None = None,
               decided: float | dict[str, float] = 0.0, widths: str = "scales",
               saliency: dict[str, Tensor] | None = None, undecided: Collection[str] = ()
               ) -> tuple[Architecture, dict[str, list[int]]]:
        """The discrete architecture, and the channels each width label keeps (largest scales first).

        Ops and inputs: the argmax; with ``decided`` > 0, a label whose largest probability is below it keeps
        the space's reference value instead (:meth:`Choice.largest`: the first op, the previous layer as
        input), so a search too short to decide does not swap hand design for a near-random pick; a mapping
        gives each kind its own (``{"op": 0.5, "input": 0.7}``; a kind left out: 0, the argmax). A label in
        ``undecided`` keeps the reference whatever its probabilities (a search that measured no evidence for it).
        Widths keep the channels whose |scale| exceeds ``threshold``; with ``flops_target`` (FLOPs per
        pixel) the threshold is instead the one, common to every width label, whose architecture is the
        widest that costs at most the target (the smallest widths if none does). ``widths="uniform"`` ignores
        the scales: every width label keeps the same fraction of its channels, the first ones (as hand design
        scales a network), the largest fraction within ``flops_target``. ``widths="per_flop"`` ranks channels by
        importance per FLOP (:meth:`importance_per_flop`) against one threshold, the largest set within
        ``flops_target``; ``widths="taylor"`` the same with a :class:`TaylorSaliency`'s ``saliency`` (the loss a
        channel's removal costs) per FLOP."""
        choices = self.space.choices()
        arch: Architecture = {}
        for label in self.alphas:
            p = torch.softmax(self.logits(label).detach(), 0)
            choice = choices[label]
            least = decided.get(choice.kind, 0.0) if isinstance(decided, dict) else decided
            sure = p.max() >= least and label not in undecided
            arch[label] = choice.values[int(p.argmax())] if sure else choice.largest()
        arch.update(self.fixed)
        if widths == "scales":
            magnitudes = {label: scales.detach().abs().cpu() for label, scales in self.scales.items()}
        elif widths == "uniform" and flops_target is not None:
            # channel i of c ranks 1 - i/c, so one threshold keeps the same fraction of every label
            magnitudes = {label: 1 - torch.arange(len(s)) / len(s) for label, s in self.scales.items()}
        elif widths == "per_flop" and flops_target is not None:
            magnitudes = self.importance_per_flop(arch)
        elif widths == "taylor" and flops_target is not None and saliency is not None:
            costs = self.channel_costs(arch)
            magnitudes = {label: saliency[label].cpu() / costs[label] for label in self.scales}
        else:
            raise ValueError(f"widths: expected 'scales', or 'uniform' / 'per_flop' / 'taylor' (with its saliency) "
                             f"with a flops_target, got {widths!r}")
        if flops_target is not None:
            threshold = self._threshold_for(arch, magnitudes, group, flops_target)
        kept: dict[str, list[int]] = {}
        arch.update(self._widths(magnitudes, threshold, group))
        for label, magnitude in magnitudes.items():
            kept[label] = sorted(torch.argsort(magnitude, descending=True)[:arch[label]].tolist())
        self.space.check(arch)
        return arch, kept

    def importance_per_flop(self, arch: Architecture) -> dict[str, Tensor]:
        """Per width label and channel: |scale| relative to the label's mean |scale|, divided by the FLOPs per pixel
        one channel of the label costs (:meth:`channel_costs`).

        Relative, because a scale before a ReLU layer is only defined up to what the next layer's weights absorb:
        magnitudes compare within a label, not across labels. Per FLOP, because channels are not equally dear: in
        a U-Net one at full resolution costs 4× one a level down, and a common threshold on raw magnitudes keeps
        the dear ones as readily as the cheap ones."""
        costs = self.channel_costs(arch)
        importance = {}
        for label, scales in self.scales.items():
            magnitude = scales.detach().abs().cpu()
            importance[label] = magnitude / magnitude.mean().clamp_min(1e-12) / costs[label]
        return importance

    def channel_costs(self, arch: Architecture) -> dict[str, float]:
        """Per width label: the FLOPs per pixel one of its channels costs (``arch``'s ops and inputs, every width
        at its widest); a dead layer's channels cost nothing (1e-9, to divide by)."""
        choices = self.space.choices()
        widest = {**arch, **{label: max(choices[label].values) for label in self.scales}}
        total = cost(self.space, widest).flops_per_pixel
        costs = {}
        for label in self.scales:
            narrowest, widest_width = min(choices[label].values), max(choices[label].values)
            saved = total - cost(self.space, {**widest, label: narrowest}).flops_per_pixel
            costs[label] = max(saved / max(widest_width - narrowest, 1), 1e-9)
        return costs

    def _widths(self, magnitudes: dict[str, Tensor], threshold: float, group: int) -> dict[str, int]:
        """Per width label: the channels above ``threshold``, rounded up to a multiple of ``group`` and to an
        allowed width."""
        choices = self.space.choices()
        widths = {}
        for label, magnitude in magnitudes.items():
            values = sorted(choices[label].values)
            k = group * math.ceil(int((magnitude > threshold).sum()) / group)
            widths[label] = next((v for v in values if v >= k), values[-1])
        return widths

    def _threshold_for(self, arch: Architecture, magnitudes: dict[str, Tensor], group: int,
                       flops_target: float) -> float:
        """The smallest of the candidate thresholds (every channel's |scale|, and above all of them) whose
        widths cost at most ``flops_target``; bisection, since fewer channels never cost more."""
        candidates = sorted({float(v) for m in magnitudes.values() for v in m.tolist()})
        candidates.append(math.inf)

        def fits(threshold: float) -> bool:
            return cost(self.space, {**arch, **self._widths(magnitudes, threshold, group)}).flops_per_pixel \
                <= flops_target

        low, high = 0, len(candidates) - 1  # candidates[high] (inf: smallest widths) is taken if nothing fits
        while low < high:
            middle = (low + high) // 2
            if fits(candidates[middle]):
                high = middle
            else:
                low = middle + 1
        return candidates[low]


class TaylorSaliency:
    """Per width label and channel, a running mean of (scale · ∂loss/∂scale)²: the first-order Taylor estimate
    of the loss a channel's removal (its scale set to 0) costs, squared (Molchanov et al., CVPR 2019). Unlike
    |scale| it sees the loss, and it is unchanged when a scale and the next layer's weights trade magnitude, so
    channels compare across layers. Updated from the architecture step's gradients, the width penalty's
    share taken out."""

    def __init__(self, arch: ArchParameters, decay: float = 0.99):
        self.decay = decay
        self.values = {label: torch.zeros_like(scales.detach()) for label, scales in arch.scales.items()}

    @torch.no_grad()
    def update(self, arch: ArchParameters, width_penalty: float) -> None:
        """Fold in the scales' current gradients, of a loss that added ``width_penalty`` × mean |scale|."""
        for label, scales in arch.scales.items():
            if scales.grad is None:
                continue
            data_grad = scales.grad - width_penalty * torch.sign(scales) / scales.numel()
            self.values[label].mul_(self.decay).add_((scales * data_grad) ** 2, alpha=1 - self.decay)

    def state_dict(self) -> dict[str, Any]:
        return {"values": {label: v.cpu() for label, v in self.values.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for label, value in state["values"].items():
            self.values[label].copy_(value)


class GradientConsistency:
    """Per op/input label, how steadily the architecture steps push its alphas one way:
    ‖Σ g‖ / √(n Σ ‖g‖²) over the n steps' alpha gradients g. It is 1 when every step pushes the same way and
    about 1/√n (:meth:`noise_floor`) when the steps' gradients are zero-mean noise: then the candidates are
    worth the same within the batch-to-batch noise, and a label's alphas wander instead of deciding
    (Adam moves an alpha by about its learning rate times this ratio per step). A label whose preferred
    candidate changes during the search reads low too."""

    def __init__(self, arch: ArchParameters):
        self.sums = {label: torch.zeros_like(alpha.detach()) for label, alpha in arch.alphas.items()}
        self.squares = {label: 0.0 for label in arch.alphas}
        self.steps = 0

    @torch.no_grad()
    def update(self, arch: ArchParameters) -> None:
        """Fold in the alphas' current gradients (one architecture step)."""
        self.steps += 1
        for label, alpha in arch.alphas.items():
            if alpha.grad is not None:
                self.sums[label] += alpha.grad
                self.squares[label] += float((alpha.grad ** 2).sum())

    def values(self) -> dict[str, float]:
        """The consistency per label, in [0, 1] (0 before any step)."""
        return {label: float(self.sums[label].norm()) / math.sqrt(self.steps * self.squares[label])
                if self.squares[label] > 0 else 0.0 for label in self.sums}

    def noise_floor(self) -> float:
        """What :meth:`values` reads, in expectation, for gradients that are pure noise: 1/√n."""
        return 1 / math.sqrt(max(1, self.steps))

    def below(self, multiple: float) -> set[str]:
        """The labels whose consistency is under ``multiple`` times the noise floor (every label before any step,
        none for ``multiple`` 0)."""
        floor = multiple * self.noise_floor()
        return {label for label, value in self.values().items() if value < floor} if multiple > 0 else set()

    def state_dict(self) -> dict[str, Any]:
        return {"sums": {label: s.cpu() for label, s in self.sums.items()}, "squares": dict(self.squares),
                "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for label, value in state["sums"].items():
            self.sums[label].copy_(value)
        self.squares.update(state["squares"])
        self.steps = state["steps"]


def describe(space: SearchSpace, arch: Architecture) -> str:
    """A Markdown table of the layers an architecture uses: op, width, input."""
    live = live_nodes(space, arch)
    lines = ["| layer | op | width | input |", "|---|---|---|---|"]
    for name, node in space.nodes.items():
        if node.kind == "layer" and name in live:
            lines.append(f"| {name} | {chosen_op(node, arch)} | {chosen_width(node, arch)} | "
                         f"{chosen_input(node, arch)} |")
    return "\n".join(lines) + "\n"

