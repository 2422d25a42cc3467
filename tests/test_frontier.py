"""The frontier benchmark's parts at toy size: compute counting, equal-compute K, frontier arithmetic, entry files."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from nasden.common.registry import SPACES
from nasden.core.supernet import Supernet
from nasden.pipeline.compute_meter import ComputeCounter
from nasden.pipeline.plots import psnr_flops_figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from frontier_math import (  # noqa: E402
    EntryStore,
    entry_key,
    equal_compute_k,
    frontier,
    frontier_psnr,
    gap_to_frontier,
    probe_span,
    seed_rows,
)


def conv_flops(cin: int, cout: int, pixels: int) -> int:
    return 2 * 9 * cin * cout * pixels


def test_a_two_layer_training_step_counts_forward_and_both_gradients() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    x = torch.rand(2, 1, 8, 8)
    with ComputeCounter() as counter:
        net(x).square().mean().backward()
    first, second = conv_flops(1, 4, 128), conv_flops(4, 1, 128)
    # forward of both; weight gradients of both; the input gradient of the second only (x needs none)
    assert counter.flops == 2 * first + 3 * second


@pytest.mark.parametrize("groups", [1, 2, 8])
def test_a_grouped_convolution_counts_its_weight_gradient_per_group(groups: int) -> None:
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=groups, bias=False)
    x = torch.rand(2, 8, 8, 8, requires_grad=True)
    with ComputeCounter() as counter:
        conv(x).sum().backward()
    forward = conv_flops(8, 8, 128) // groups
    assert counter.flops == 3 * forward  # forward, input gradient and weight gradient alike


def test_one_sandwich_step_counts_every_sub_network_it_runs() -> None:
    space = SPACES.get("slimmable")(depth=3, channels=16, group=8, min_ratio=0.5, attention=False)
    supernet = Supernet(space)
    x = torch.rand(2, 1, 8, 8)
    with ComputeCounter() as counter:
        loss = sum(supernet(x, arch).square().mean() for arch in (space.largest(), space.smallest()))
        loss.backward()
    pixels = 128
    by_hand = 0
    for width in (16, 8):  # conv1 1→w, conv2 w→w, tail w→1: forward + weight gradient each, input gradient not conv1
        layers = [conv_flops(1, width, pixels), conv_flops(width, width, pixels), conv_flops(width, 1, pixels)]
        by_hand += 2 * sum(layers) + sum(layers[1:])
    assert counter.flops == by_hand


def test_equal_compute_k() -> None:
    assert equal_compute_k(4e12, 1e12) == 4
    assert equal_compute_k(3.9e12, 1e12) == 4  # a search 2.5% under four screens still pays for four
    assert equal_compute_k(3.4e12, 1e12) == 3
    assert equal_compute_k(1e11, 1e12) == 1  # never fewer than one architecture
    with pytest.raises(ValueError):
        equal_compute_k(1e12, 0)


def test_probe_span_holds_whole_periods_of_a_repeating_stage() -> None:
    assert probe_span(8) == 8  # every step alike: the default probes, 2 and 10 steps
    assert probe_span(8, 4) == 8 and probe_span(8, 8) == 8
    assert probe_span(8, 3) == 9  # three periods of 3
    assert probe_span(8, 16) == 16  # steps 2..17 hold the largest once (at 16); 2..9 did not
    with pytest.raises(ValueError):
        probe_span(8, 0)


def test_frontier_keeps_the_points_nothing_cheaper_beats() -> None:
    points = [(100.0, 27.0), (200.0, 26.8), (400.0, 28.0), (50.0, 26.0), (400.0, 27.5)]
    assert frontier(points) == [(50.0, 26.0), (100.0, 27.0), (400.0, 28.0)]


def test_frontier_interpolation_and_gap_by_hand() -> None:
    line = [(100.0, 27.0), (400.0, 28.0)]
    assert frontier_psnr(line, 200.0) == pytest.approx(27.5)  # halfway in log-FLOPs
    assert frontier_psnr(line, 100.0 * 4 ** 0.25) == pytest.approx(27.25)
    assert gap_to_frontier(line, (200.0, 27.7)) == pytest.approx(0.2)
    assert gap_to_frontier(line, (200.0, 27.3)) == pytest.approx(-0.2)
    assert frontier_psnr(line, 99.0) is None  # no static network that cheap: no comparison
    assert gap_to_frontier(line, (800.0, 27.5)) == pytest.approx(-0.5)  # beyond: the 400-FLOPs network's 28.0
    assert math.isclose(frontier_psnr([(100.0, 27.0)], 100.0), 27.0)


def test_entry_files_round_trip_and_are_skipped_on_a_rerun(tmp_path) -> None:
    store = EntryStore(tmp_path / "entries")
    calls = []

    def make() -> dict:
        calls.append(1)
        return {"entry": "static", "psnr": {"bsd68_s25": 28.1}, "flops_per_pixel": 1.5e5}

    first = store.run("sigma25-b1-static", make)
    assert store.load("sigma25-b1-static") == first and len(calls) == 1
    assert store.run("sigma25-b1-static", make) == first and len(calls) == 1  # stored: not run again
    store.run("sigma25-b1-static", make, force=True)
    assert len(calls) == 2 and store.all() == [first]
    assert not list((tmp_path / "entries").glob("*.tmp"))


def test_seed_files_and_their_spread() -> None:
    assert entry_key("blind", 1.0, "dds", 0) == "blind-b1-dds"
    assert entry_key("blind", 0.25, "dds", 2) == "blind-b0.25-dds-s2"
    runs = [{"setting": "sigma25", "budget": 1.0, "entry": e, "seed": s, "psnr": p, "flops_per_pixel": 1e4,
             "train_flops": f, "device": "cpu", "machine": "m"}
            for e, s, p, f in [("a", 0, 28.5, 6e13), ("a", 1, 28.62, 4.5e13), ("b", 0, 27.0, 6e13)]]
    rows = seed_rows([*runs, {**runs[0], "budget": 0}], lambda r: r["psnr"], 6e13)  # budget 0 (BM3D): no entry
    assert len(rows) == 1  # "b" has one seed
    assert rows[0]["entry"] == "a" and rows[0]["seed 0"] == "28.500 @ 1e+04 (1.00)"
    assert rows[0]["seed 1"] == "28.620 @ 1e+04 (0.75)"  # the share of its budget it spent
    assert math.isclose(rows[0]["spread (dB)"], 0.12)


def test_the_routing_oracle_upgrades_the_units_that_gain_most_per_flop() -> None:
    from routing_oracle import oracle_choices
    gains = torch.tensor([[-1.0, 0.0], [-0.1, 0.0], [-0.5, 0.0]])  # dB under the cheap and the dear candidate
    weights = torch.ones(3)
    assert oracle_choices(gains, [1.0, 2.0], 2.0, weights).tolist() == [1, 1, 1]
    assert oracle_choices(gains, [1.0, 2.0], 1.7, weights).tolist() == [1, 0, 1]  # 5/3 FLOPs: the two largest gains
    assert oracle_choices(gains, [1.0, 2.0], 1.5, weights).tolist() == [1, 0, 0]
    # the third unit weighing double: upgrading it too would spend 7/4
    assert oracle_choices(gains, [1.0, 2.0], 1.7, torch.tensor([1.0, 1.0, 2.0])).tolist() == [1, 0, 0]
    assert oracle_choices(gains, [1.0, 2.0], 1.0, weights).tolist() == [0, 0, 0]


def test_tiles_are_cut_and_assembled_row_major_with_smaller_edge_tiles() -> None:
    from routing_oracle import assemble, tile_errors
    clean = torch.zeros(1, 3, 3)
    output = torch.arange(9.0).reshape(1, 3, 3)
    # tiles: rows 0-1 × cols 0-1, rows 0-1 × col 2, row 2 × cols 0-1, row 2 × col 2
    assert tile_errors(output, clean, 2).tolist() == [0 + 1 + 9 + 16, 4 + 25, 36 + 49, 64]
    zeros, ones = torch.zeros(1, 4, 4), torch.ones(1, 4, 4)
    image = assemble([zeros, ones], torch.tensor([0, 1, 1, 0]), 2)
    assert image[0, :2, 2:].eq(1).all() and image[0, 2:, :2].eq(1).all() and image.sum() == 8


def test_scattered_series_are_drawn_as_points_only() -> None:
    figure = psnr_flops_figure({"frontier": [(1e3, 28.0), (2e3, 28.5)], "gate": [(1.5e3, 28.1)]}, "t",
                               scattered=("gate",))
    frontier_line, gate = figure.axes[0].lines
    assert frontier_line.get_linestyle() == "-" and gate.get_linestyle() == "None"
    assert gate.get_xdata().tolist() == [1.5]  # thousands of FLOPs/pixel
