"""One step of a model-guided unfolded network (MoD-NAS Eq. 6b, the DPDNN update)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class UnfoldStep(nn.Module):
    """``x_t = x_{t-1} - delta [(x_{t-1} - y) + eta (x_{t-1} - v)]`` with learnable scalars ``delta``, ``eta``.

    The paper leaves the initial values open. The default ``delta (1 + eta) = 1`` makes a step
    start as the convex mix ``delta y + (1 - delta) v``: mostly the denoiser's output, a little of
    the noisy input, whatever the previous estimate.
    """

    def __init__(self, delta: float = 0.1, eta: float = 9.0):
        super().__init__()
        self.delta = nn.Parameter(torch.tensor(float(delta)))
        self.eta = nn.Parameter(torch.tensor(float(eta)))

    def forward(self, previous: Tensor, denoised: Tensor, noisy: Tensor) -> Tensor:
        return previous - self.delta * ((previous - noisy) + self.eta * (previous - denoised))
