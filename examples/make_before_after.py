"""Write examples/before_after.png: noisy | denoised | clean for examples/camera_sigma25.png.

    python examples/make_before_after.py RUN_DIR     # e.g. runs/quick from recipes/quick.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from nasden.data.image_sets import builtin_folder
from nasden.data.images import load_image, save_image
from nasden.data.quality import psnr
from nasden.deploy.inference import denoise
from nasden.deploy.model_file import load as load_final

here = Path(__file__).parent
loaded = load_final(Path(sys.argv[1]))
space, model = loaded.space, loaded.network
clean = load_image(builtin_folder() / "camera.png", 1)[:, 64:320, 128:384]  # the crop make_noisy_example.py noised
noisy = load_image(here / "camera_sigma25.png", 1)
out = denoise(model, noisy, space.resolution_multiple).image
gap = torch.ones(1, 256, 4)
save_image(torch.cat([noisy, gap, out, gap, clean], -1), here / "before_after.png")
print(f"noisy {psnr(noisy, clean):.2f} dB → denoised {psnr(out, clean):.2f} dB; wrote {here / 'before_after.png'}")
