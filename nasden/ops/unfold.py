"""One step of a model-guided unfolded network (MoD-NAS Eq. 6b, the DPDNN update)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class UnfoldStep(nn.Module):
    """``x_t = x_{t-1} - delta [(x_{t-1} - y) + eta (x_{t-1} - v)]`` with learnable scalars ``delta``, ``eta``.

    The paper leaves the initial values open. The default ``delta (1 + eta) = 1`` makes a step
    start as the convex mix ``delta y + (1 - delta) v``: mostly the denoiser's output, a little of
    the noisy input, whatever the previous estimate. ``learned=False`` keeps ``delta`` and ``eta`` at their
    initial values (buffers): on mild real camera noise (PolyU) Adam drives a learned ``delta`` to 0 within a
    few hundred steps, while the U-Net is still poor, and the network stays the identity.
    """

    def __init__(self, delta: float = 0.1, eta: float = 9.0, learned: bool = True):
        super().__init__()
        for name, value in (("delta", delta), ("eta", eta)):
            tensor = torch.tensor(float(value))
            if learned:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    def forward(self, previous: Tensor, denoised: Tensor, noisy: Tensor) -> Tensor:
        return previous - self.delta * ((previous - noisy) + self.eta * (previous - denoised))
