"""Colour photos through a gray network: in colour out (nasden.data.color, nasden denoise --color)."""
from __future__ import annotations

import pytest
import torch

from nasden.cli import main
from nasden.data.color import denoise_in_color, to_rgb, to_ycbcr
from nasden.data.images import load_image, save_image
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute


def test_ycbcr_round_trip_and_gray_has_no_chrominance() -> None:
    rgb = torch.rand(3, 5, 7)
    torch.testing.assert_close(to_rgb(to_ycbcr(rgb)), rgb, atol=1e-5, rtol=0)
    gray = to_ycbcr(torch.full((3, 2, 2), 0.4))
    torch.testing.assert_close(gray, torch.tensor([0.4, 0.0, 0.0])[:, None, None].expand(3, 2, 2), atol=1e-6, rtol=0)


def test_channels_go_through_one_by_one_and_luma_keeps_chrominance() -> None:
    rgb = torch.rand(3, 4, 6)
    seen: list[tuple[int, ...]] = []

    def halve(gray: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(gray.shape))
        return gray / 2

    torch.testing.assert_close(denoise_in_color(halve, rgb, "channels"), rgb / 2)
    assert seen == [(1, 4, 6)] * 3
    out = to_ycbcr(denoise_in_color(halve, rgb, "luma"))
    torch.testing.assert_close(out[0], to_ycbcr(rgb)[0] / 2, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1:], to_ycbcr(rgb)[1:], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="color mode 'hsv'"):
        denoise_in_color(halve, rgb, "hsv")  # type: ignore[arg-type]


def test_a_gray_run_denoises_a_colour_photo_in_colour(tmp_path, capsys) -> None:
    recipe = {"name": "gray", "seed": 1, "device": "cpu",
              "data": {"patch": 16, "batch": 2, "val_images": 1, "val_crop": 32, "noise": {"sigma": 25}},
              "space": {"name": "dncnn", "depth": 3, "channels": 8}, "stages": [{"strategy": "train", "steps": 2}]}
    run = create_run(parse_recipe(recipe), tmp_path / "run")
    execute(run, quiet=True)
    photo = tmp_path / "photo.png"
    save_image(torch.rand(3, 20, 30) * 0.4 + 0.3, photo)  # mid-range: no clipping when Y changes
    for mode in ("channels", "luma"):
        out = tmp_path / f"{mode}.png"
        assert main(["denoise", str(run), str(photo), str(out), "--color", mode]) == 0
        assert load_image(out, None).shape == (3, 20, 30)  # colour in, colour out, the same size
    assert "colour through the gray network: each RGB channel" in capsys.readouterr().out
    luma = to_ycbcr(load_image(tmp_path / "luma.png", None))
    torch.testing.assert_close(luma[1:], to_ycbcr(load_image(photo, None))[1:], atol=2 / 255, rtol=0)
