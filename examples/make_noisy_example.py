"""Write examples/camera_sigma25.png: a 256×256 crop of scikit-image's 'camera' with AWGN sigma 25 (seed 0).

    python examples/make_noisy_example.py
"""
from __future__ import annotations

from pathlib import Path

import torch

from nasden.data.image_sets import builtin_folder
from nasden.data.images import load_image, save_image
from nasden.data.noise import NoiseConfig, add_noise

clean = load_image(builtin_folder() / "camera.png", 1)[:, 64:320, 128:384]
noisy = add_noise(clean[None], NoiseConfig(sigma=25), torch.Generator().manual_seed(0))[0]
print(save_image(noisy, Path(__file__).parent / "camera_sigma25.png"))
