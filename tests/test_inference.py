from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasden.common.registry import SPACES
from nasden.core.dynamic import DynamicDenoiser
from nasden.core.extract import extract
from nasden.core.supernet import Supernet
from nasden.deploy.inference import denoise, merge_rows, receptive_radius, route_map, tile_layout


def small_net(**options):
    space = SPACES.get("dncnn")(depth=3, channels=8, bn=False, **options)  # receptive radius 3
    return space, extract(Supernet(space), space.largest()).eval()


@pytest.mark.parametrize(("size", "tile", "overlap", "multiple"),
                         [(300, 128, 32, 1), (256, 144, 16, 1), (512, 144, 16, 1), (97, 32, 16, 1), (240, 48, 16, 8),
                          (129, 128, 0, 1)])
def test_tile_layout_covers_the_image_with_the_fewest_even_tiles(size, tile, overlap, multiple) -> None:
    starts, length = tile_layout(size, tile, overlap, multiple)
    assert starts[0] == 0 and starts[-1] + length == size and length <= tile
    assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))  # neighbours share ≥ overlap
    assert len(starts) == -(-(size - overlap) // (tile - overlap))  # no fewer tiles can cover it
    assert all(x % multiple == 0 for x in (*starts, length))
    assert max(b - a for a, b in zip(starts, starts[1:])) - min(b - a for a, b in zip(starts, starts[1:])) <= multiple


def test_tile_layout_of_a_small_side_is_one_tile() -> None:
    assert tile_layout(100, 100, 16) == ([0], 100)
    assert tile_layout(256, 144, 16) == ([0, 120], 136)  # two tiles of 136, not three of 144


@pytest.mark.parametrize("size", [(97, 130), (64, 64), (200, 37)])
def test_tiled_output_equals_whole_image_output(size: tuple[int, int]) -> None:
    _, net = small_net()
    noisy = torch.rand(1, *size)
    whole = denoise(net, noisy).image
    tiled = denoise(net, noisy, tile=32, overlap=16, batch=3).image
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=0)  # overlap 16 ≥ 4 × radius 3: exact everywhere


def test_unet_tiles_respect_the_size_multiple() -> None:
    space = SPACES.get("unet")(levels=2, channels=8)
    net = extract(Supernet(space), space.largest()).eval()
    noisy = torch.rand(1, 90, 75)
    out = denoise(net, noisy, space.resolution_multiple, tile=30, overlap=12).image
    assert out.shape == noisy.shape and torch.isfinite(out).all()


class HalfGate(torch.nn.Module):
    """Bright tiles to candidate 1, dark ones to candidate 0."""

    flops_per_pixel = 10.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x.mean((1, 2, 3)) > 0.5).float()
        return torch.stack([1 - bright, bright], 1)


def half_gate_model() -> DynamicDenoiser:
    """The smallest and largest slimmable DnCNN (100 and 1000 FLOPs/pixel) behind :class:`HalfGate`."""
    space = SPACES.get("slimmable")(depth=3, channels=16)
    supernet = Supernet(space)
    return DynamicDenoiser(HalfGate(), supernet, [space.smallest(), space.largest()], [100.0, 1000.0]).eval()


def test_per_tile_routing_spends_per_tile_and_maps_choices() -> None:
    model = half_gate_model()
    noisy = torch.zeros(1, 64, 128)
    noisy[..., 64:] = 1.0  # right half bright
    by_tile = denoise(model, noisy, tile=64, overlap=0, route="tile")
    assert by_tile.choices == [0, 1]
    assert by_tile.flops_per_pixel == pytest.approx((100 + 1000) / 2 + 10)
    by_image = denoise(model, noisy, tile=64, overlap=0, route="image")
    assert len(set(by_image.choices)) == 1
    whole = denoise(model, noisy)  # no tiling: one choice for the image
    assert len(whole.choices) == 1 and whole.flops_per_pixel in (110.0, 1010.0)
    picture = route_map(by_tile, 2)
    assert picture.shape == (3, 64, 128)
    assert not torch.equal(picture[:, :, :64], picture[:, :, 64:])


def test_merge_rows_joins_equal_neighbours_up_to_the_limit() -> None:
    boxes = [(0, left, 8, 12) for left in (0, 8, 16, 24, 32)] + [(6, 0, 8, 12)]
    merged = merge_rows(boxes, [1, 1, 1, 0, 0, 0], limit=2)
    assert merged == [((0, 0, 8, 20), 1, 2), ((0, 16, 8, 12), 1, 1), ((0, 24, 8, 20), 0, 2), ((6, 0, 8, 12), 0, 1)]


def test_tiles_of_one_choice_compute_their_overlap_once() -> None:
    model = half_gate_model()
    noisy = torch.zeros(1, 64, 160)
    noisy[..., 96:] = 1.0  # tiles start at 0, 48, 96: only the last is bright
    result = denoise(model, noisy, tile=64, overlap=16, route="tile")
    assert result.choices == [0, 0, 1] and model.counts.tolist() == [2, 1]
    # the gate on three 64 × 64 tiles, the cheap network once on columns 0-112, the dear one on 96-160
    assert result.flops_per_pixel == pytest.approx((10 * 3 * 64 * 64 + 100 * 64 * 112 + 1000 * 64 * 64) / (64 * 160))
    cheap = model.candidates[0](noisy[None])[0]
    torch.testing.assert_close(result.image[..., 8:88], cheap[..., 8:88], atol=1e-5, rtol=0)


def test_cost_bias_moves_the_choices_towards_cheap_or_dear_candidates() -> None:
    model = half_gate_model()
    noisy = torch.zeros(1, 64, 128)
    noisy[..., 64:] = 1.0
    choices = {}
    for bias in (0.0, 5.0, -5.0):
        model.cost_bias = bias
        choices[bias] = denoise(model, noisy, tile=64, overlap=0, route="tile").choices
    assert choices == {0.0: [0, 1], 5.0: [0, 0], -5.0: [1, 1]}


@pytest.mark.parametrize("depth", [3, 8, 17])
def test_receptive_radius_of_a_dncnn_is_its_depth(depth: int) -> None:
    space = SPACES.get("dncnn")(depth=depth, channels=8, bn=True)
    assert receptive_radius(extract(Supernet(space), space.largest()).eval(), 1) == depth  # one pixel per 3×3 conv


def test_tiles_smaller_than_the_receptive_field_are_refused() -> None:
    from nasden.common.errors import UsageError
    from nasden.core.specs import static_spec
    from nasden.deploy.denoiser import Denoiser
    from nasden.deploy.model_file import ModelFile

    def denoiser(depth: int) -> Denoiser:
        space = SPACES.get("dncnn")(depth=depth, channels=2)
        network = extract(Supernet(space), space.largest()).eval()
        return Denoiser(ModelFile(space, static_spec(space.largest()), network, {}, Path("-")))

    denoiser(31).check_tiles(64, 16)  # a 63-pixel field fits a 64-pixel tile
    with pytest.raises(UsageError, match=r"smaller than the network's receptive field \(65 pixels\); use --tile 65"):
        denoiser(32).check_tiles(64, 16)
    whole = denoiser(32)
    whole.check_tiles(0, 16)  # whole image: no tiles, nothing to measure
    assert whole._radius is None
