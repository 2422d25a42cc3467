"""A dynamic denoiser: a gate routes each image to one of several candidate networks."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn


class DynamicDenoiser(nn.Module):
    """Gate + candidates (static networks sorted by cost). A batch runs its gate once, then each group
    of images that chose the same candidate in one call; ``counts`` tallies the choices.

    ``cost_bias`` sets the operating point and can be moved at inference time without retraining: the
    choice is ``argmax(log p_i - cost_bias · FLOPs_i / FLOPs_max)``, so a larger bias trades PSNR for
    fewer FLOPs and a smaller one the reverse (0 for a classifying gate: its own choice; a gate that
    predicts PSNR gains gets the bias that meets its FLOPs budget)."""

    def __init__(self, gate: nn.Module, candidates: Sequence[nn.Module], flops: Sequence[float],
                 cost_bias: float = 0.0):
        super().__init__()
        self.gate = gate
        self.candidates = nn.ModuleList(candidates)
        self.flops = [float(f) for f in flops]
        self.counts = torch.zeros(len(candidates), dtype=torch.long)
        self.cost_bias = cost_bias

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
        self.counts += torch.bincount(choice.cpu(), minlength=len(self.candidates))
        first = int(choice[0])
        if bool((choice == first).all()):
            return self.candidates[first](x)
        out = torch.empty_like(x)
        for index in choice.unique().tolist():
            rows = (choice == index).nonzero().flatten()
            out[rows] = self.candidates[index](x[rows])
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
