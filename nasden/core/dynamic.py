"""A dynamic denoiser: a gate routes each image to one of several candidates of one shared network.

The candidates are architectures of one supernet (DDS-Net's slimmed widths, ClassPruning's N:M
branches, evolution's Pareto points): the denoiser keeps the supernet's weights once, restricted to
what some candidate uses (:meth:`nasden.core.supernet.Supernet.restrict`), and runs candidate i as
``supernet(x, archs[i])``, slicing widths and applying N:M masks from the same tensors. Where the space
has BatchNorm whose statistics depend on the width, each candidate keeps its own recalibrated running
statistics (a few numbers per channel) and swaps them in before it runs.

A gate that computes the network's first block (DDS-Net's: a conv and its ReLU at the gate's width)
hands that block's output to the chosen candidate, which computes only the channels beyond the
gate's width: the gate then costs the candidate nothing but its squeeze and head.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.core.ops.channelwise import DynamicBatchNorm
from nasden.core.ops.convolution import DynamicConv
from nasden.core.shapes import chosen_width
from nasden.core.space import Architecture
from nasden.core.supernet import Supernet

Statistics = dict[str, tuple[Tensor, Tensor]]  # BatchNorm module name → (running mean, running variance)


def batchnorm_statistics(network: Supernet) -> Statistics:
    """A copy of the running statistics of every width-sliced BatchNorm in ``network`` (empty if none)."""
    return {name: (m.running_mean.clone(), m.running_var.clone())
            for name, m in network.named_modules() if isinstance(m, DynamicBatchNorm)}


class CandidateStatistics(nn.Module):
    """One candidate's BatchNorm running statistics, swapped into the shared network before it runs."""

    def __init__(self, statistics: Statistics):
        super().__init__()
        self.names = list(statistics)
        for index, (mean, var) in enumerate(statistics.values()):
            self.register_buffer(f"mean_{index}", mean.clone())
            self.register_buffer(f"var_{index}", var.clone())

    def pairs(self) -> list[tuple[Tensor, Tensor]]:
        """(running mean, running variance) per BatchNorm, in the order of ``names``."""
        return [(getattr(self, f"mean_{index}"), getattr(self, f"var_{index}")) for index in range(len(self.names))]


class Candidate(nn.Module):
    """One candidate of a :class:`DynamicDenoiser` as a network of its own: the shared network at one
    architecture, with the candidate's BatchNorm statistics. A view: its weights are the denoiser's."""

    def __init__(self, network: Supernet, arch: Architecture, statistics: CandidateStatistics):
        super().__init__()
        network.space.check(arch)
        self.network, self.arch, self.statistics = network, dict(arch), statistics
        modules = dict(network.named_modules())
        self._norms = [modules[name] for name in statistics.names]  # looked up once, not on every call

    @torch.no_grad()
    def load_statistics(self) -> None:
        """Swap this candidate's BatchNorm statistics into the shared network."""
        for norm, (mean, var) in zip(self._norms, self.statistics.pairs()):
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)

    def forward(self, x: Tensor) -> Tensor:
        self.load_statistics()
        return self.network(x, self.arch)


class SharedBlock(NamedTuple):
    """The first block a gate computes for the candidates: its conv node, its last node, the gate's width."""

    conv: str
    last: str
    width: int


def shared_block(gate: nn.Module, network: Supernet) -> SharedBlock | None:
    """What ``gate`` computes of ``network``'s first block, if the candidates can take it over: the gate names
    the block (``gate.block``, ``gate.width``, ``gate.classify``), a plain conv followed by ReLUs only."""
    block = getattr(gate, "block", None)
    if not block or not hasattr(gate, "classify"):
        return None
    nodes = [network.space.nodes[name] for name in block]
    conv = network.layers[block[0]].candidates[nodes[0].ops[0]] if len(nodes[0].ops) == 1 else None
    if not isinstance(conv, DynamicConv) or nodes[0].pre_relu or any(n.ops != ("relu",) for n in nodes[1:]):
        return None
    return SharedBlock(block[0], block[-1], gate.width)


class DynamicDenoiser(nn.Module):
    """Gate + candidates of one shared network, sorted by cost. A batch runs its gate once, then each
    group of images that chose the same candidate in one call; ``counts`` tallies the choices.

    ``statistics``: per candidate, the BatchNorm statistics recalibrated for it (see the module doc);
    omitted, every candidate starts with the network's own.

    ``cost_bias`` sets the operating point and can be moved at inference time without retraining: the
    choice is ``argmax(log p_i - cost_bias · FLOPs_i / FLOPs_max)``, so a larger bias trades PSNR for
    fewer FLOPs and a smaller one the reverse (0 for a classifying gate: its own choice; a gate that
    predicts PSNR gains gets the bias that meets its FLOPs budget)."""

    #: :meth:`choose` in words, for deployments that route outside Python (nasden export's manifest)
    routing_rule = "candidate argmax(gate_logits[i] - cost_bias * flops[i] / max(flops))"

    def __init__(self, gate: nn.Module, network: Supernet, archs: Sequence[Architecture], flops: Sequence[float],
                 cost_bias: float = 0.0, statistics: Sequence[Statistics] | None = None):
        super().__init__()
        if len(archs) != len(flops) or (statistics is not None and len(statistics) != len(archs)):
            raise ValueError(f"{len(archs)} architectures need as many FLOPs figures and statistics")
        self.gate = gate
        self.network = network.restrict(archs)
        self.archs = [dict(arch) for arch in archs]
        own = batchnorm_statistics(self.network)
        self.statistics = nn.ModuleList([CandidateStatistics({name: (statistics[i] if statistics else own)[name]
                                                              for name in own}) for i in range(len(archs))])
        # views, not submodules: the weights are registered once, as self.network
        self._views = [Candidate(self.network, arch, stats) for arch, stats in zip(self.archs, self.statistics)]
        self.flops = [float(f) for f in flops]
        device = next(self.network.parameters()).device
        self.register_buffer("relative_flops", torch.tensor(self.flops, device=device) / max(self.flops),
                             persistent=False)
        self.counts = torch.zeros(len(archs), dtype=torch.long)
        self.cost_bias = cost_bias
        self.shared_block = shared_block(gate, self.network)

    @property
    def candidates(self) -> list[Candidate]:
        """The candidates as networks (views of the shared weights), cheapest first."""
        return self._views

    @property
    def gate_flops(self) -> float:
        """FLOPs per pixel the gate adds to the chosen candidate's: none beyond its squeeze and head when every
        candidate takes its first block over whole (no candidate narrower there than the gate)."""
        block = self.shared_block
        if block is not None and all(chosen_width(self.network.space.nodes[block.conv], arch) >= block.width
                                     for arch in self.archs):
            return 0.0
        return float(getattr(self.gate, "flops_per_pixel", 0.0))

    def route(self, x: Tensor) -> Tensor:
        """The candidate index chosen for every image of the batch."""
        return self.choose(self.gate(x), self.cost_bias)

    def choose(self, logits: Tensor, cost_bias: float) -> Tensor:
        """``argmax(logits_i - cost_bias · FLOPs_i / FLOPs_max)`` per row (log p_i differs from the logits
        by a constant per row, so this is the rule above)."""
        return (logits - cost_bias * self.relative_flops).argmax(1)

    def run(self, x: Tensor, choice: Tensor, features: Tensor | None = None) -> Tensor:
        """Run each image on its chosen candidate, one call per candidate chosen (``features``: the gate's
        first-block output, for the candidates to take over)."""
        self.counts += torch.bincount(choice.cpu(), minlength=len(self.archs))
        first = int(choice[0])
        if bool((choice == first).all()):
            return self._candidate(first, x, features)
        out = torch.empty_like(x)
        for index in choice.unique().tolist():
            rows = (choice == index).nonzero().flatten()
            out[rows] = self._candidate(index, x[rows], None if features is None else features[rows])
        return out

    def route_and_run(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The denoised batch and each image's choice, the first block computed once when the gate shares it."""
        if self.shared_block is None:
            choice = self.route(x)
            return self.run(x, choice), choice
        features = self.gate.stem(x)
        choice = self.choose(self.gate.classify(features), self.cost_bias)
        return self.run(x, choice, features), choice

    def forward(self, x: Tensor) -> Tensor:
        return self.route_and_run(x)[0]

    def _candidate(self, index: int, x: Tensor, features: Tensor | None) -> Tensor:
        view = self._views[index]
        if features is None or self.shared_block is None:
            return view(x)
        conv_name, last, width = self.shared_block
        node = self.network.space.nodes[conv_name]
        wanted = chosen_width(node, view.arch)
        if wanted <= width:
            block = features[:, :wanted]
        else:  # the channels beyond the gate's: the same conv's next output rows, then ReLU
            conv: DynamicConv = self.network.layers[conv_name].candidates[node.ops[0]]
            weight = conv.weight[width:wanted].to(memory_format=torch.channels_last)
            rest = F.conv2d(x, weight, None if conv.bias is None else conv.bias[width:wanted], conv.stride,
                            conv.padding, conv.dilation)
            block = torch.cat([features, F.relu(rest)], 1)
        view.load_statistics()
        return self.network(x, view.arch, given={last: block})

    def reset_counts(self) -> None:
        self.counts.zero_()

    def spent(self) -> dict[str, Any]:
        """Mean FLOPs/pixel actually spent (gate included) and the share of each candidate since the reset."""
        total = int(self.counts.sum())
        shares = [int(c) / total if total else 0.0 for c in self.counts]
        flops = sum(s * f for s, f in zip(shares, self.flops)) + self.gate_flops
        return {"flops_per_pixel": flops, "choices": [int(c) for c in self.counts], "shares": shares}
