from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from nasden.data.quality import psnr, ssim


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_and_ssim_match_scikit_image(channels: int) -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(channels, 37, 45, generator=g)
    noisy = clean + 0.1 * torch.randn(clean.shape, generator=g)
    clipped = noisy.clamp(0, 1)
    a, b = clipped.permute(1, 2, 0).numpy().astype(np.float64), clean.permute(1, 2, 0).numpy().astype(np.float64)
    expected_ssim = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=1.0, channel_axis=2)
    assert ssim(noisy, clean) == pytest.approx(expected_ssim, abs=1e-6)
    assert psnr(noisy, clean) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-6)


def test_quantized_psnr_rounds_to_8_bits() -> None:
    clean = torch.full((1, 8, 8), 100 / 255)
    output = clean + 0.3 / 255  # rounds back to 100
    assert psnr(output, clean, quantize=True) == float("inf")
    assert psnr(output, clean) == pytest.approx(20 * np.log10(255 / 0.3), rel=1e-4)
