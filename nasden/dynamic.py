"""A dynamic denoiser: a gate routes each image to one of several candidates of one shared network.

The candidates are architectures of one supernet (DDS-Net's slimmed widths, ClassPruning's N:M
branches, evolution's Pareto points): the denoiser keeps the supernet's weights once, restricted to
what some candidate uses (:meth:`nasden.supernet.Supernet.restrict`), and runs candidate i as
``supernet(x, archs[i])``, slicing widths and applying N:M masks from the same tensors. Where the space
has BatchNorm whose statistics depend on the width, each candidate keeps its own recalibrated running
statistics (a few numbers per channel) and swaps them in before it runs.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from nasden.ops.channelwise import DynamicBatchNorm
from nasden.space import Architecture
from nasden.supernet import Supernet

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

    @torch.no_grad()
    def load_into(self, network: nn.Module) -> None:
        if not self.names:
            return
        modules = dict(network.named_modules())
        for index, name in enumerate(self.names):
            modules[name].running_mean.copy_(getattr(self, f"mean_{index}"))
            modules[name].running_var.copy_(getattr(self, f"var_{index}"))


class Candidate(nn.Module):
    """One candidate of a :class:`DynamicDenoiser` as a network of its own: the shared network at one
    architecture, with the candidate's BatchNorm statistics. A view: its weights are the denoiser's."""

    def __init__(self, network: Supernet, arch: Architecture, statistics: CandidateStatistics):
        super().__init__()
        network.space.check(arch)
        self.network, self.arch, self.statistics = network, dict(arch), statistics

    def forward(self, x: Tensor) -> Tensor:
        self.statistics.load_into(self.network)
        return self.network(x, self.arch)


class DynamicDenoiser(nn.Module):
    """Gate + candidates of one shared network, sorted by cost. A batch runs its gate once, then each
    group of images that chose the same candidate in one call; ``counts`` tallies the choices.

    ``statistics``: per candidate, the BatchNorm statistics recalibrated for it (see the module doc);
    omitted, every candidate starts with the network's own.

    ``cost_bias`` sets the operating point and can be moved at inference time without retraining: the
    choice is ``argmax(log p_i - cost_bias · FLOPs_i / FLOPs_max)``, so a larger bias trades PSNR for
    fewer FLOPs and a smaller one the reverse (0 for a classifying gate: its own choice; a gate that
    predicts PSNR gains gets the bias that meets its FLOPs budget)."""

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
        self.counts = torch.zeros(len(archs), dtype=torch.long)
        self.cost_bias = cost_bias

    @property
    def candidates(self) -> list[Candidate]:
        """The candidates as networks (views of the shared weights), cheapest first."""
        return self._views

    @property
    def gate_flops(self) -> float:
        """FLOPs per pixel the gate itself costs."""
        return float(getattr(self.gate, "flops_per_pixel", 0.0))

    def route(self, x: Tensor) -> Tensor:
        """The candidate index chosen for every image of the batch."""
        return self.choose(self.gate(x), self.cost_bias)

    def choose(self, logits: Tensor, cost_bias: float) -> Tensor:
        """``argmax(logits_i - cost_bias · FLOPs_i / FLOPs_max)`` per row (log p_i differs from the logits
        by a constant per row, so this is the rule above)."""
        relative = torch.tensor(self.flops, device=logits.device) / max(self.flops)
        return (logits - cost_bias * relative).argmax(1)

    def run(self, x: Tensor, choice: Tensor) -> Tensor:
        """Run each image on its chosen candidate, one call per candidate chosen."""
        self.counts += torch.bincount(choice.cpu(), minlength=len(self.archs))
        first = int(choice[0])
        if bool((choice == first).all()):
            return self._views[first](x)
        out = torch.empty_like(x)
        for index in choice.unique().tolist():
            rows = (choice == index).nonzero().flatten()
            out[rows] = self._views[index](x[rows])
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x, self.route(x))

    def reset_counts(self) -> None:
        self.counts.zero_()

    def spent(self) -> dict[str, Any]:
        """Mean FLOPs/pixel actually spent (gate included) and the share of each candidate since the reset."""
        total = int(self.counts.sum())
        shares = [int(c) / total if total else 0.0 for c in self.counts]
        flops = sum(s * f for s, f in zip(shares, self.flops)) + self.gate_flops
        return {"flops_per_pixel": flops, "choices": [int(c) for c in self.counts], "shares": shares}
