"""Frontier benchmark: does the search pay? Every method against static networks, random search and BM3D,
at equal training compute.

Protocol. Training patches (48², batch 32) from Train400 with AWGN, in two settings: ``sigma25`` (σ = 25,
scored on Set12 and BSD68 at σ 25) and ``blind`` (σ uniform in [0, 50], scored at σ 15 / 25 / 50).
Validation (model selection: slimming, random search's pick) uses the builtin photographs, never a
test set. Noisy test images are a pure function of the seed (0). Every entry gets the same training
compute, ``--budget`` × 6e13 FLOPs, counted by :class:`nasden.pipeline.compute_meter.ComputeCounter` over every
step of every stage, search included (convolution and matrix FLOPs as they run, forward and
backward). A stage's steps are set from its measured compute per step: two short probe runs of the
entry's stages up to that one, differing only in its steps, give its FLOPs per step, a short run of the
whole recipe the rest's fixed FLOPs, and the budget left is shared out. Test scoring is not counted. Wall
time is recorded beside.

Entries (``python bench/frontier.py list``): static DnCNN-like, plain U-Net and FFDNet-like networks at four sizes, the
doubling-channel U-Net the dynamic methods slim (``static_unet_doubling``) at four, and with two, three and four
down-samplings at a size its width group does not allow (``static_unet_doubling2`` / ``3`` / ``4``), with the U-Net 8's
FLOPs moved to the coarse levels (``static_unet_coarse_8``: 1 / 2 / 4 convs per block by level), with BatchNorm
(``static_unet_doubling_bn_8``), with gated blocks for its convs (``static_unet_gated_10``,
:mod:`nasden.core.ops.gated`),
MoD-NAS's doubling space with plain choices (``static_unet_growth_8``) at one; diagnostics of the training: the doubling
U-Net 8 at twice the learning rate (``static_unet_doubling_8_lr2x``, not a frontier point); MoD-NAS (DARTS 40% of the
budget, retrain 60%; ``mod_nas_45k`` derives to 45k FLOPs/pixel instead of by the width threshold; ``_sharp`` also
anneals the softmax temperature and adds the late entropy penalty, ``SHARPEN``; ``_decided`` derives undecided ops and
inputs to the plain reference, ``DECIDED``; ``_uniform`` derives every width label to the same fraction of its channels
(``UNIFORM``: the search decides ops and inputs only); ``_per_flop`` keeps the channels most important per FLOP
(``PER_FLOP``); ``_taylor`` those whose removal costs the most loss per FLOP, a Taylor estimate from the search's
gradients (``TAYLOR``); ``_inherit`` retrains from the supernet's weights in the same run; ``mod_nas_growth_30k``
searches the space with channels doubling by level (16/32/64) with those switches (decided, uniform, inherit) to 30k
FLOPs/pixel; ``_sure_inputs`` keeps a searched input only past probability 0.7 (``SURE_INPUTS``), ``_short_search``
searches with 20% of the budget instead of 40%, ``_short_search_gumbel`` so on Gumbel-softmax samples (SNAS) and
``_short_search_gumbel_hard`` on one Gumbel-sampled path per step (GDAS), ``_short_search_shrink`` dropping op
candidates in three stages (P-DARTS, ``SHRINK``); ``mod_nas_45k_arch_alone`` and
``mod_nas_growth_30k_arch_alone`` are diagnostics: the derived architecture retrained with the whole budget, its search
not counted); random search in the MoD-NAS space (K architectures within ±15% of the DARTS-derived FLOPs, K the number
of 10% screens DARTS's measured search compute pays for, which they share equally, the best on validation retrained from
scratch with 60%), and (``random_search_growth``) in the doubling space against ``mod_nas_growth_30k_short_search`` (K =
2, retrained with 80%); ``random_arch_growth_0`` to ``_2``, a diagnostic: that search's first three random architectures
(it screens the first two), each trained alone with the whole budget; DDS-Net (sandwich, slimming, gate at half the
FLOPs); evolution (sandwich 50%, NSGA-II, retrain the front point nearest half the largest network's FLOPs with 50%);
ClassPruning (classifier, branches, joint); DDS-Net and ClassPruning over the DnCNN backbone, and (``_unet``) over the
U-Net backbone (``dds_unet_gain``: its gate trained on ``gain`` labels; ``_largest_alone`` and ``_dense_alone``,
ablations: their largest sub-network trained alone with the whole budget, ``_half`` with half, as many updates as the
sandwich gives it; ``dds_unet_min_half``: the narrowest sub-network at half width instead of a fifth; ``dds_unet_n2``:
two sub-networks per sandwich step, the largest and the smallest, ``_n3`` three, ``dds_unet_n2_gain`` two with gain
labels, ``_late4_gain`` then four for the last quarter, ``_n2_min_half_gain`` two, the smallest at half width, with gain
labels, ``_largest4`` / ``_largest8`` / ``_largest16`` the largest on every 4th / 8th / 16th step only,
``dds_unet8_n2_min_half_gain_largest8`` the 8th-step pair over the doubling U-Net 8 (4 to 8 channels),
``evolution_gate_unet_n2_min_half_largest8`` the 8th-step pair with an NSGA-II front (``NSGA2``) for its gate's
candidates instead of slimming's (evolution → gate); ``dds_unet_n3_inplace`` / ``_synergy``: the distillation ablation
at three per step, teachers over the second half; ``_small_classifier``: ClassPruning's classifier at 16 channels,
stride 3); ``evolution_random``: evolution with Optuna's random sampler, its random search at equal compute; BM3D (no
training; ``pip install -e .[bench]``).

    python bench/frontier.py run all --setting sigma25 [--budget 1] [--device cuda] [--force] [--keep]
    python bench/frontier.py latency      # CPU ms per megapixel of every stored entry (run alone)
    python bench/frontier.py report       # bench/results/frontier.{json,md,png}

Entry results go to ``bench/results/frontier/<setting>-b<budget>-<entry>.json`` as each finishes; a
rerun skips the entries that exist unless ``--force``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from frontier_math import EntryStore, entry_key, equal_compute_k, frontier, gap_to_frontier, probe_span, seed_rows

from nasden.core.cost import cost, measure_latency
from nasden.core.space import Architecture
from nasden.core.specs import build_network, is_dynamic
from nasden.data.image_sets import evaluation_pairs, load_set
from nasden.data.noise import NoiseConfig
from nasden.deploy import model_file as final
from nasden.deploy.scoring import evaluate_network, markdown_table
from nasden.deploy.scoring import score as score_set
from nasden.pipeline.compute_meter import TRAIN_FLOPS_PER_FORWARD, ComputeCounter
from nasden.pipeline.recipe import build_space, parse_recipe
from nasden.pipeline.run import create_run, execute
from record import RESULTS, provenance, write_report

DATA = Path(os.environ.get("NASDEN_BENCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
STORE = EntryStore(RESULTS / "frontier")
BUDGET = 6e13  # FLOPs of training compute per entry at --budget 1 (about 12 minutes on 2 CPU cores)
SETTINGS = {"sigma25": {"sigma": 25.0, "test": [25.0]}, "blind": {"sigma": [0.0, 50.0], "test": [15.0, 25.0, 50.0]}}
SETS = ("set12", "bsd68")
PROBE = (2, 10)  # steps of the two probe runs (the longer one rounded up to whole `largest_every` periods)
PATCH, BATCH = 48, 32  # training patches: side and batch
LR = 1e-3  # Adam's learning rate in every entry's training stage (another one only in a diagnostic)

STATIC = {  # family: (space, the option that sets the size, sizes)
    "dncnn": ({"name": "dncnn", "depth": 8, "bn": True}, "channels", [12, 16, 24, 32]),
    "unet": ({"name": "mod_unet", "stages": 1, "levels": 2, "layers": 3, "group": None}, "channels", [8, 12, 16, 24]),
    "ffdnet": ({"name": "ffdnet", "depth": 10}, "channels", [16, 32, 48, 64]),
    # the U-Net the dynamic methods slim (channels doubling by level) at full width: 3.9k/15k/34k/60k FLOPs/pixel
    "unet_doubling": ({"name": "slimmable", "backbone": "unet", "levels": 2, "group": 4, "min_ratio": 0.2},
                      "channels", [4, 8, 12, 16]),
    # that U-Net at a size its width group (4) does not allow: 6/12/24, 8.6k FLOPs/pixel
    "unet_doubling2": ({"name": "unet", "levels": 2}, "channels", [6]),
    # that U-Net with a third down-sampling (6/12/24/48 at size 6: 12.5k FLOPs/pixel), a coarser level's context
    "unet_doubling3": ({"name": "unet", "levels": 3}, "channels", [6]),
    # and a fourth (6/12/24/48/96 at size 6: 16k FLOPs/pixel, beside the two-level U-Net 8's 15k)
    "unet_doubling4": ({"name": "unet", "levels": 4}, "channels", [6]),
    # the doubling U-Net 8's FLOPs moved to the coarse levels: one conv per block at full resolution, four at the
    # bottom (15.3k FLOPs/pixel as the U-Net 8, 1.4x its parameters, twice its receptive field): does depth where
    # a conv carries more parameters per FLOP learn faster?
    "unet_coarse": ({"name": "unet", "levels": 2, "convs": [1, 2, 4]}, "channels", [8]),
    # the doubling U-Net 8 with BatchNorm after every conv but the first (DnCNN's way to train faster): does
    # normalisation make it learn more in the same compute?
    "unet_doubling_bn": ({"name": "unet", "levels": 2, "bn": True}, "channels", [8]),
    # the doubling U-Net with gated blocks (NAFNet's simple gate, depthwise convs, channel attention; 10/20/40 at
    # 14.8k FLOPs/pixel, beside the U-Net 8's 15.3k) for its convs: does another kind of layer learn faster?
    "unet_gated": ({"name": "unet", "levels": 2, "op": "gated3x3"}, "channels", [10]),
    # MoD-NAS's own space with channels doubling by level (8/16/32; 22k FLOPs/pixel): its plain reference
    "unet_growth": ({"name": "mod_unet", "stages": 1, "levels": 2, "layers": 3, "group": None, "growth": 2},
                    "channels", [8]),
}
MOD_NAS_SPACE = {"name": "mod_unet", "stages": 1, "levels": 2, "layers": 3, "channels": 24, "group": 8}
# channels doubling by level (16/32/64), as in the doubling U-Net that leads the static frontier
MOD_NAS_GROWTH_SPACE = {**MOD_NAS_SPACE, "channels": 16, "group": 4, "growth": 2}
SLIMMABLE_SPACE = {"name": "slimmable", "backbone": "dncnn", "depth": 8, "channels": 32, "group": 8, "min_ratio": 0.2}
NM_SPACE = {"name": "nm_branches", "backbone": "dncnn", "depth": 8, "channels": 32, "patterns": ["1:4", "2:4", "4:4"]}
# the dynamic methods over the U-Net backbone (16/32/64 channels by level; 60k FLOPs/pixel at full width): the
# family that makes the static frontier, where the DnCNN backbone above sits 0.8 dB or more below it
SLIMMABLE_UNET_SPACE = {"name": "slimmable", "backbone": "unet", "levels": 2, "channels": 16, "group": 4,
                        "min_ratio": 0.2}
# its narrowest sub-network at half width: the doubling U-Net 8, the static frontier's best at budget 1
SLIMMABLE_UNET_HALF_SPACE = {**SLIMMABLE_UNET_SPACE, "min_ratio": 0.5}
# the same at half the channels (8/16/32 at full width: the doubling U-Net 8), its narrowest the doubling U-Net 4
SLIMMABLE_UNET8_HALF_SPACE = {**SLIMMABLE_UNET_HALF_SPACE, "channels": 8}
NM_UNET_SPACE = {"name": "nm_branches", "backbone": "unet", "levels": 2, "channels": 16,
                 "patterns": ["1:4", "2:4", "4:4"]}


class Entry:
    """One entry's runs under one setting and budget: every run's compute is counted and summed."""

    def __init__(self, name: str, setting: str, budget: float, device: str, folder: Path, seed: int = 0):
        self.name, self.setting, self.budget, self.device, self.folder = name, setting, budget, device, folder
        self.seed = seed
        self.flops, self.seconds, self.runs = 0, 0.0, 0
        self.plan: list[dict[str, Any]] = []  # per run: the steps chosen, measured FLOPs per step, fixed FLOPs

    def recipe(self, space: dict[str, Any], stages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "device": self.device,
                "data": {"train": str(DATA / "train400"), "val": "builtin", "val_crop": 128, "patch": PATCH,
                         "batch": BATCH, "noise": {"kind": "gaussian", "sigma": SETTINGS[self.setting]["sigma"]}},
                "space": space, "stages": stages}

    def _execute(self, recipe: dict[str, Any]) -> tuple[Path, list[dict], int]:
        self.runs += 1
        run_dir = create_run(parse_recipe(recipe, self.name), self.folder / f"{self.name}-{self.runs}")
        with ComputeCounter() as counter:
            summaries = execute(run_dir, quiet=True)
        return run_dir, summaries, counter.flops

    def run(self, space: dict[str, Any], stages: list[dict[str, Any]], shares: dict[int, float],
            derived_flops: float | None = None) -> tuple[Path, list[dict]]:
        """Run ``stages`` with each stage ``i`` of ``shares`` given that share of the budget, in steps.

        ``derived_flops``: stage 0 searches and the later stages (``train``) train what it derives, of about this
        many FLOPs/pixel (its target); their step cost, measured on what the short probe search derived, is
        scaled to it (else a probe that derives a smaller network makes the entry overspend), and they are given
        their share as a training compute (``compute``), so that a derived network off the target still spends it."""
        budget = self.budget * BUDGET * sum(shares.values())
        per_step, fixed, probed = self._probe(space, stages, list(shares))
        if derived_flops is not None:
            per_step = {i: cost * (derived_flops / probed[0]["flops_per_pixel"] if i > 0 else 1)
                        for i, cost in per_step.items()}
        steps = {i: max(2, int(shares[i] / sum(shares.values()) * (budget - fixed) / per_step[i])) for i in shares}
        started = time.perf_counter()
        planned = _with_steps(stages, steps, final=True)
        if derived_flops is not None:
            for i in steps.keys() - {0}:
                planned[i]["compute"] = steps[i] * TRAIN_FLOPS_PER_FORWARD * derived_flops * PATCH ** 2 * BATCH
                del planned[i]["steps"]
        run_dir, summaries, flops = self._execute(self.recipe(space, planned))
        self.plan.append({"steps": steps, "flops_per_step": per_step, "fixed_flops": fixed, "flops": flops})
        self.flops += flops
        self.seconds += time.perf_counter() - started
        return run_dir, summaries

    def _probe(self, space: dict[str, Any], stages: list[dict[str, Any]],
               budgeted: list[int]) -> tuple[dict[int, float], float, list[dict]]:
        """FLOPs per step of every budgeted stage, the FLOPs of everything else, and the shortest probe's
        stage summaries, from short runs.

        A stage's FLOPs per step come from two runs of the stages up to it that differ only in its steps: the
        stages after it are left out, since what they cost depends on the weights they get (slimming's path,
        the gate's candidates) and that noise, divided by a few steps, once halved a sandwich stage's steps."""
        short = PROBE[0]
        _, summaries, base = self._execute(self.recipe(space, _with_steps(stages, dict.fromkeys(budgeted, short))))
        per_step = {}
        for i in budgeted:
            head = stages[:i + 1]
            steps = dict.fromkeys([j for j in budgeted if j <= i], short)
            before = base if i == len(stages) - 1 else self._execute(self.recipe(space, _with_steps(head, steps)))[2]
            long_ = short + probe_span(PROBE[1] - short, stages[i].get("largest_every", 1))
            after = self._execute(self.recipe(space, _with_steps(head, {**steps, i: long_})))[2]
            per_step[i] = (after - before) / (long_ - short)
        return per_step, base - short * sum(per_step.values()), summaries


def _with_steps(stages: list[dict[str, Any]], steps: dict[int, int], final: bool = False) -> list[dict[str, Any]]:
    """The stages with ``steps`` set; validation and checkpoints every quarter (final) or at the end (probes);
    DARTS's warm-up, given as ``warmup_share``, in steps."""
    out = []
    for i, stage in enumerate(stages):
        stage = dict(stage)
        if i in steps:
            n = steps[i]
            stage.update(steps=n, val_every=max(1, n // 4) if final else n, checkpoint_every=n)
            if "warmup_share" in stage:
                stage["warmup"] = int(stage.pop("warmup_share") * n)
        out.append(stage)
    return out


def plain_arch(space_config: dict[str, Any]) -> Architecture:
    """conv 3×3 everywhere (strided down, transposed up), each layer reading the previous one, widest widths."""
    space = build_space(space_config)
    return {label: (max(c.values) if label.startswith("width:") else c.values[-1] if label.startswith("input:")
                    else c.values[0]) for label, c in space.choices().items()}


def score(run_dir: Path, device: str, setting: str) -> dict[str, Any]:
    """Test PSNR per set and σ (not counted as training compute), FLOPs/pixel per set and σ and their mean over
    BSD68's σ (what the headline PSNR averages; a dynamic network's FLOPs follow the noise), the final spec and,
    for a dynamic network, every candidate's BSD68 PSNR run alone (cheapest first)."""
    loaded = final.load(run_dir, device)
    space, spec, model = loaded.space, loaded.spec, loaded.network
    scores: dict[str, Any] = {}
    flops: dict[str, float] = {}
    candidates: dict[str, list[float]] = {}
    for name in SETS:
        images = load_set(str(DATA / name), 1, "val")
        for sigma in SETTINGS[setting]["test"]:
            pairs = [(n, noisy.to(device), clean.to(device))
                     for n, noisy, clean in evaluation_pairs(images, NoiseConfig(sigma=sigma), 0)]
            row = evaluate_network(model, space, spec, pairs, name)
            scores[f"{name}_s{sigma:g}"] = row["psnr"]
            flops[f"{name}_s{sigma:g}"] = row["flops_per_pixel"]
            if "shares" in row:
                scores[f"{name}_s{sigma:g}_shares"] = row["shares"]
            if name == "bsd68" and is_dynamic(model):
                candidates[f"{name}_s{sigma:g}"] = [
                    round(score_set(c, pairs, name, space.resolution_multiple).psnr, 4) for c in model.candidates]
    return {"psnr": scores, "flops_per_pixel": bsd68_mean(flops, setting), "flops_per_pixel_by_test": flops,
            "spec": spec, **({"candidate_psnr": candidates} if candidates else {})}


# -- entries ---------------------------------------------------------------------------------------
def train_stage(arch: Any, lr: float = LR, weight_init: str = "default") -> dict[str, Any]:
    """The training stage every entry uses: ``arch`` (an architecture, ``largest`` or ``auto``), Adam at ``lr``, MSE,
    fresh weights drawn by ``weight_init``."""
    return {"strategy": "train", "arch": arch, "lr": lr, "loss": "mse",
            **({"weight_init": weight_init} if weight_init != "default" else {})}


def static(family: str, size: int, lr: float = LR, weight_init: str = "default") -> Callable[[Entry], dict[str, Any]]:
    def make(entry: Entry) -> dict[str, Any]:
        base, option, _ = STATIC[family]
        space = {**base, option: size}
        arch = plain_arch(space)
        run_dir, _ = entry.run(space, [train_stage(arch, lr, weight_init)], {0: 1.0})
        # another learning rate is a diagnostic of the yardstick's training, not a point of its frontier; another
        # initialisation is a hand-designed network like the others
        kind = "static" if lr == LR else f"diagnostic: lr {lr:g},"
        init = "" if weight_init == "default" else f" ({weight_init} init)"
        return {"family": f"{kind} {family}{init}", "space": space, "run_dir": str(run_dir)}
    return make


SHARPEN = {"temperature_min": 0.3, "entropy_penalty": 0.5}  # darts options that make its decisions sharper
DECIDED = {"decided": 0.5}  # undecided ops and inputs derive to the plain reference, not a near-random argmax
SURE_INPUTS = {"decided": {"op": 0.5, "input": 0.7}}  # an input choice must be surer than an op to stand
UNIFORM = {"widths": "uniform"}  # widths scaled uniformly to the FLOPs target, as hand design does
PER_FLOP = {"widths": "per_flop"}  # the channels most important per FLOP (|scale| relative within its layer)
TAYLOR = {"widths": "taylor"}  # the channels whose removal costs the most loss per FLOP (Taylor, from gradients)
SHRINK = {"shrink": [3, 2]}  # P-DARTS: every op choice keeps its 3, then its 2 most probable candidates
SIGNAL = {"weight_init": "he", "mixing": "rms"}  # a supernet whose coarse levels pass signal and alpha gradients
EVIDENCE = {"evidence": 2.0}  # ops and inputs whose alpha gradients pushed under 2x the noise floor: the reference
SHORT_SEARCH = "mod_nas_growth_30k_short_search"  # the best searched entry (σ 25, budget 1)


def mod_nas(flops_target: float | None = None, options: dict[str, Any] | None = None, inherit: bool = False,
            space: dict[str, Any] = MOD_NAS_SPACE, search_share: float = 0.4) -> Callable[[Entry], dict[str, Any]]:
    """DARTS (``search_share`` of the budget; with further darts ``options``) over ``space``, derive (the width
    threshold, or a FLOPs target), retrain (the rest) from scratch, or (``inherit``) from the supernet's weights of
    the derived choices, in the same run."""
    def make(entry: Entry) -> dict[str, Any]:
        search = {"strategy": "darts", "warmup_share": 0.25, "lr": 1e-3, "arch_lr": 1e-2, "val_size": 96,
                  "flops_target": flops_target, **(options or {})}
        if inherit:
            run_dir, summaries = entry.run(space, [search, {**train_stage("auto"), "init": "supernet"}],
                                           {0: search_share, 1: 1 - search_share}, derived_flops=flops_target)
            search_flops = entry.plan[-1]["steps"][0] * entry.plan[-1]["flops_per_step"][0]
        else:
            run_dir, summaries = entry.run(space, [search], {0: search_share})
            search_flops = entry.flops
            run_dir, _ = entry.run(space, [train_stage(summaries[0]["arch"])], {0: 1 - search_share})
        return {"family": "MoD-NAS (DARTS)", "space": space, "run_dir": str(run_dir),
                "search_flops": search_flops, "search_share": search_share, "flops_target": flops_target,
                "darts_options": options or {},
                "inherit": inherit, **{key: summaries[0][key] for key in (
                    "largest_probability", "gradient_consistency", "consistency_noise_floor", "no_evidence",
                    "supernet_val_psnr")}}
    return make


def _required(entry: Entry, method: str) -> dict[str, Any]:
    """The stored result of ``method`` at the entry's setting, budget and seed, which the entry builds on."""
    stored = STORE.load(entry_key(entry.setting, entry.budget, method, entry.seed))
    if stored is None:
        raise SystemExit(f"{entry.name} needs the {method} entry of {entry.setting} budget {entry.budget:g} first")
    return stored


def searched_arch_alone(method: str) -> Callable[[Entry], dict[str, Any]]:
    """Diagnostic, not an equal-compute entry: the architecture ``method``'s entry derived, retrained from scratch
    with the whole budget (its search not counted). Above the static frontier: the search finds better
    architectures and what it costs is the problem; below: the architectures themselves are worse."""
    def make(entry: Entry) -> dict[str, Any]:
        stored = _required(entry, method)
        run_dir, _ = entry.run(stored["space"], [train_stage(stored["spec"]["arch"])], {0: 1.0})
        return {"family": "diagnostic: searched architecture, search not counted", "space": stored["space"],
                "run_dir": str(run_dir), "architecture_of": method}
    return make


def trained_alone(space: dict[str, Any], share: float = 1.0) -> Callable[[Entry], dict[str, Any]]:
    """Ablation: the largest sub-network of a dynamic method's space (DDS's full width, ClassPruning's dense
    branch) trained alone with ``share`` of the budget, no weight sharing. Against the dynamic entry's score where
    it routes to that sub-network: what sharing the training among sub-networks costs; with the share that gives
    it as many updates as the dynamic entry's training did, how much of that is fewer updates."""
    def make(entry: Entry) -> dict[str, Any]:
        run_dir, _ = entry.run(space, [train_stage("largest")], {0: share})
        return {"family": "ablation: largest sub-network trained alone", "space": space, "run_dir": str(run_dir),
                "budget_share": share}
    return make


def random_architectures(space_config: dict[str, Any], target: float, k: int, seed: int = 0) -> list[Architecture]:
    """The first ``k`` architectures of random draws (seeded by ``seed``) from the space within ±15% of ``target``
    FLOPs/pixel."""
    space = build_space(space_config)
    rng = random.Random(seed)
    archs: list[Architecture] = []
    for _ in range(100_000):
        arch = space.sample(rng)
        if abs(cost(space, arch).flops_per_pixel / target - 1) <= 0.15:
            archs.append(arch)
            if len(archs) == k:
                return archs
    raise SystemExit(f"found {len(archs)} of {k} random architectures within 15% of {target:.0f} FLOPs/pixel")


def _target(space_config: dict[str, Any], method: dict[str, Any]) -> float:
    """The FLOPs/pixel of the architecture ``method``'s stored result derived."""
    return cost(build_space(space_config), method["spec"]["arch"]).flops_per_pixel


def random_search(method: str, space: dict[str, Any], family: str) -> Callable[[Entry], dict[str, Any]]:
    """``method``'s equal-compute rival: random architectures of ``space`` near its derived FLOPs, as many screened
    (about 10% of the budget each) as its measured search compute pays for, in equal parts of it, the best on
    validation retrained from scratch with the share ``method`` retrained with."""
    def make(entry: Entry) -> dict[str, Any]:
        searched = _required(entry, method)
        if "search_share" not in searched:
            raise SystemExit(f"the stored {method} entry predates its search_share: rerun it (--force) first")
        target = _target(space, searched)
        k = equal_compute_k(searched["search_flops"], 0.1 * entry.budget * BUDGET)
        share = searched["search_flops"] / k / (entry.budget * BUDGET)  # of the budget, per screen
        screened = []
        for arch in random_architectures(space, target, k, entry.seed):
            _, summaries = entry.run(space, [train_stage(arch)], {0: share})
            screened.append((summaries[0]["val_psnr"], arch))
        best = max(screened, key=lambda s: s[0])[1]
        run_dir, _ = entry.run(space, [train_stage(best)], {0: 1 - searched["search_share"]})
        return {"family": family, "space": space, "run_dir": str(run_dir), "k": k, "rival_of": method,
                "target_flops_per_pixel": target, "screened_val_psnr": [s[0] for s in screened]}
    return make


def random_arch_alone(method: str, space: dict[str, Any], index: int) -> Callable[[Entry], dict[str, Any]]:
    """Diagnostic: the ``index``-th of the random architectures random search draws near ``method``'s derived FLOPs
    (the first K are the ones it screens), trained alone with the whole budget. Beside ``searched_arch_alone``: how
    far apart the space's architectures land at equal FLOPs and compute, so whether there is a better one to find."""
    def make(entry: Entry) -> dict[str, Any]:
        target = _target(space, _required(entry, method))
        arch = random_architectures(space, target, index + 1, entry.seed)[index]
        run_dir, _ = entry.run(space, [train_stage(arch)], {0: 1.0})
        return {"family": "diagnostic: random architecture, whole budget", "space": space, "run_dir": str(run_dir),
                "near": method, "index": index}
    return make


SLIMMING = {"strategy": "progressive_slimming", "val_images": 3, "val_size": 96}
NSGA2 = {"strategy": "evolution", "trials": 60, "sampler": "nsga2", "sampler_options": {"population_size": 12},
         "val_images": 3, "val_size": 96}


def dds(space: dict[str, Any], labels: str = "paper", n: int = 4, late_n: int | None = None, evolve: bool = False,
        **sandwich: Any) -> Callable[[Entry], dict[str, Any]]:
    """Sandwich of ``n`` sub-networks per step, no distillation unless ``sandwich`` options say (the whole budget;
    with ``late_n``, 75% and then a second sandwich of ``late_n`` at lr 3e-4 for the last 25%), progressive
    slimming (or, ``evolve``, an NSGA-II front) for the candidates, a gate at half the largest candidate's FLOPs
    trained on ``labels`` (the paper's, which choose between the largest and the smallest only, or ``gain``)."""
    def make(entry: Entry) -> dict[str, Any]:
        sandwiches = [{"strategy": "sandwich", "n": n, "distill": "none", "lr": 1e-3, "val_size": 96, **sandwich}]
        if late_n:
            sandwiches.append({**sandwiches[0], "n": late_n, "lr": 3e-4})
        stages = [*sandwiches, NSGA2 if evolve else {**SLIMMING, "group": space["group"]},
                  {"strategy": "gate", "candidates": 4, "beta": 0.2, "budget_ratio": 0.5, "steps": 150, "lr": 1e-3,
                   "patch": 48, "labels": labels}]
        run_dir, _ = entry.run(space, stages, {0: 0.75, 1: 0.25} if late_n else {0: 1.0})
        family = "evolution → gate (dynamic)" if evolve else "DDS-Net (dynamic)"
        return {"family": family, "space": space, "run_dir": str(run_dir)}
    return make


def evolution(sampler: str = "nsga2") -> Callable[[Entry], dict[str, Any]]:
    """Sandwich (50%), a search of the supernet with Optuna's ``sampler`` (NSGA-II, or ``random``: random search with
    the same trials and compute), the front point nearest half the largest network's FLOPs retrained (50%)."""
    def make(entry: Entry) -> dict[str, Any]:
        search = NSGA2 if sampler == "nsga2" else {**NSGA2, "sampler": sampler, "sampler_options": {}}
        stages = [{"strategy": "sandwich", "n": 4, "distill": "none", "lr": 1e-3, "val_size": 96}, search]
        run_dir, _ = entry.run(SLIMMABLE_SPACE, stages, {0: 0.5})
        front = json.loads((run_dir / "stages" / "01-evolution" / "pareto.json").read_text())
        space = build_space(SLIMMABLE_SPACE)
        largest = cost(space, space.largest()).flops_per_pixel
        chosen = min(front, key=lambda e: abs(e["flops_per_pixel"] - largest / 2))
        run_dir, _ = entry.run(SLIMMABLE_SPACE, [train_stage(chosen["arch"])], {0: 0.5})
        family = "evolution (NSGA-II, retrained)" if sampler == "nsga2" else "random search (slimmable space)"
        return {"family": family, "space": SLIMMABLE_SPACE, "run_dir": str(run_dir), "sampler": sampler}
    return make


def class_pruning(space: dict[str, Any], channels: int = 32, stride: int = 2, gradient: str = "sr_ste",
                  skip_below: float = 0.0) -> Callable[[Entry], dict[str, Any]]:
    """Classifier pretraining (its blocks' ``channels`` and ``stride``), branch training (75%), joint fine-tuning
    (25%), both through the N:M masks by ``gradient``. With ``skip_below`` the image-branch pairs weighing less are
    not run, and the batch of stages 2-3 is three times the others' (with a confident classifier, about the compute
    of a step that runs every pair)."""
    def make(entry: Entry) -> dict[str, Any]:
        routed = {"skip_below": skip_below, "batch": 3 * BATCH} if skip_below else {}
        masks = {"gradient": gradient, "decay": 2e-4, **routed}
        stages = [{"strategy": "classifier_pretrain", "steps": 300, "lr": 1e-3, "lr_min": 1e-6, "channels": channels,
                   "stride": stride, "batch": 16, "pool_batches": 32},
                  {"strategy": "branch_train", "lr": 1e-3, "lr_min": 1e-5, **masks},
                  {"strategy": "joint_finetune", "lr": 1e-4, "lr_min": 1e-6, "w_reconstruction": 1.0,
                   "w_entropy": 1e-4, "w_cost": 1e-3, **masks}]
        run_dir, _ = entry.run(space, stages, {1: 0.75, 2: 0.25})
        return {"family": "ClassPruning (dynamic)", "space": space, "run_dir": str(run_dir)}
    return make


ENTRIES: dict[str, Callable[[Entry], dict[str, Any]]] = {
    **{f"static_{family}_{size}": static(family, size) for family, (_, _, sizes) in STATIC.items() for size in sizes},
    # diagnostic: is the frontier limited by how fast Adam learns? The doubling U-Net 8 at twice the rate
    "static_unet_doubling_8_lr2x": static("unet_doubling", 8, lr=2e-3),
    "mod_nas": mod_nas(), "mod_nas_45k": mod_nas(45e3), "mod_nas_45k_sharp": mod_nas(45e3, SHARPEN),
    "mod_nas_45k_inherit": mod_nas(45e3, inherit=True), "mod_nas_45k_decided": mod_nas(45e3, DECIDED),
    "mod_nas_45k_decided_inherit": mod_nas(45e3, DECIDED, inherit=True),
    "mod_nas_45k_decided_uniform_inherit": mod_nas(45e3, {**DECIDED, **UNIFORM}, inherit=True),
    "mod_nas_45k_decided_per_flop_inherit": mod_nas(45e3, {**DECIDED, **PER_FLOP}, inherit=True),
    "mod_nas_45k_decided_taylor_inherit": mod_nas(45e3, {**DECIDED, **TAYLOR}, inherit=True),
    "mod_nas_45k_arch_alone": searched_arch_alone("mod_nas_45k"),
    "mod_nas_growth_30k": mod_nas(30e3, {**DECIDED, **UNIFORM}, inherit=True, space=MOD_NAS_GROWTH_SPACE),
    # inputs decided only past 0.7: does the search's choice of skips (0.50-0.70 there) cost, or its compute?
    "mod_nas_growth_30k_sure_inputs": mod_nas(30e3, {**SURE_INPUTS, **UNIFORM}, inherit=True,
                                              space=MOD_NAS_GROWTH_SPACE),
    # is the growth search's architecture better than the plain one (static_unet_growth_8), its search not counted?
    "mod_nas_growth_30k_arch_alone": searched_arch_alone("mod_nas_growth_30k"),
    # the search at 20% of the budget instead of 40%: is the search's compute share what costs it against the frontier?
    "mod_nas_growth_30k_short_search": mod_nas(30e3, {**DECIDED, **UNIFORM}, inherit=True,
                                               space=MOD_NAS_GROWTH_SPACE, search_share=0.2),
    # Gumbel-softmax samples instead of the softmax (SNAS; in darts_vs_nni they decide: 3 and 5 of 6 past 0.5), and
    # GDAS's one sampled path per step (0.21x a search step's FLOPs here): does either decide the ops, for the better?
    **{f"{SHORT_SEARCH}_{sampling}": mod_nas(30e3, {**DECIDED, **UNIFORM, "sampling": sampling}, inherit=True,
                                             space=MOD_NAS_GROWTH_SPACE, search_share=0.2)
       for sampling in ("gumbel", "gumbel_hard")},
    # P-DARTS's progressive shrinking: do the op choices decide once the candidates compete in ever smaller sets (and
    # the later steps, running fewer candidates, cost less), and for the better?
    f"{SHORT_SEARCH}_shrink": mod_nas(30e3, {**DECIDED, **UNIFORM, **SHRINK}, inherit=True, space=MOD_NAS_GROWTH_SPACE,
                                      search_share=0.2),
    # He's initialisation and mixing by the weights' L2 norm: at the default initialisation the coarse levels'
    # alpha gradients are 1e-6 to 1e-14 (bench/signal_propagation.py), under Adam's epsilon, so those choices never
    # move; do they decide, and for the better, once the signal reaches them?
    f"{SHORT_SEARCH}_signal": mod_nas(30e3, {**DECIDED, **UNIFORM, **SIGNAL}, inherit=True, space=MOD_NAS_GROWTH_SPACE,
                                      search_share=0.2),
    # and with 6x the architecture learning rate: 48 steps from 1e-2 down to 1e-3 move an alpha by about 0.27, too
    # little for a softmax over six candidates to pass 0.5; once the signal reaches every level, do they decide,
    # and well?
    f"{SHORT_SEARCH}_signal_lr6x": mod_nas(30e3, {**DECIDED, **UNIFORM, **SIGNAL, "arch_lr": 6e-2, "arch_lr_min": 6e-3},
                                           inherit=True, space=MOD_NAS_GROWTH_SPACE, search_share=0.2),
    # the same initialisation for the frontier's best hand-made network: what He's initialisation alone is worth
    "static_unet_doubling_8_he": static("unet_doubling", 8, weight_init="he"),
    # only the choices the search measured a steady push for stand: does it keep the skips that paid, and drop the rest?
    "mod_nas_growth_30k_evidence": mod_nas(30e3, {**DECIDED, **UNIFORM, **EVIDENCE}, inherit=True,
                                           space=MOD_NAS_GROWTH_SPACE),
    # evidence instead of a probability: its op choices are pushed 2-4x above the noise floor, their softmaxes still
    # under 0.32 after 112 steps (mod_nas_growth_30k_evidence); does the argmax of a steady push pay?
    "mod_nas_growth_30k_evidence_only": mod_nas(30e3, {**UNIFORM, **EVIDENCE}, inherit=True,
                                                space=MOD_NAS_GROWTH_SPACE),
    "random_search": random_search("mod_nas", MOD_NAS_SPACE, "random search (MoD-NAS space)"),
    # the best searched entry's rival: random search in the doubling space at its FLOPs and search compute
    "random_search_growth": random_search(SHORT_SEARCH, MOD_NAS_GROWTH_SPACE, "random search (doubling space)"),
    # how far apart do architectures of that space land at that FLOPs, each given the whole budget?
    **{f"random_arch_growth_{i}": random_arch_alone(SHORT_SEARCH, MOD_NAS_GROWTH_SPACE, i) for i in range(3)},
    "dds": dds(SLIMMABLE_SPACE), "dds_unet": dds(SLIMMABLE_UNET_SPACE),
    "dds_unet_gain": dds(SLIMMABLE_UNET_SPACE, "gain"),
    # the narrowest sub-network at half width instead of a fifth: does the largest lose less to sharing?
    "dds_unet_min_half": dds(SLIMMABLE_UNET_HALF_SPACE),
    # the largest and the smallest only (n = 2): a step costs 1.12 of the largest's instead of 2.0 (blind b1 probes),
    # and one narrower network shares the weights instead of three
    "dds_unet_n2": dds(SLIMMABLE_UNET_SPACE, n=2),
    # one random width between them: is the interference the random widths', one by one?
    "dds_unet_n3": dds(SLIMMABLE_UNET_SPACE, n=3),
    "dds_unet_n2_gain": dds(SLIMMABLE_UNET_SPACE, "gain", n=2),
    # the smallest at half width, the doubling U-Net 8 (15k FLOPs/pixel, the frontier's best at budget 1): does a gate
    # pay when its cheap candidate is the best static network's architecture, trained in the shared weights?
    "dds_unet_n2_min_half_gain": dds(SLIMMABLE_UNET_HALF_SPACE, "gain", n=2),
    # the widths between trained late: does the gate get usable cheap candidates without the early interference?
    "dds_unet_n2_late4_gain": dds(SLIMMABLE_UNET_SPACE, "gain", n=2, late_n=4),
    # the paper's distillation ablation (its Table order: synergy >= in-place >= none for the smallest), the teachers
    # brought in over the second half as recipes/dds_net.yaml does (from the first step they cost 1.8 dB:
    # dds_distillation.py); with three per step synergy's smallest learns from the mean of the largest and the random
    "dds_unet_n3_inplace": dds(SLIMMABLE_UNET_SPACE, n=3, distill="inplace", distill_ramp=[0.5, 1.0]),
    "dds_unet_n3_synergy": dds(SLIMMABLE_UNET_SPACE, n=3, distill="synergy", distill_ramp=[0.5, 1.0]),
    # the pair with the largest on every 4th step only: the smallest, where the gate sends most images, gets 2.5x
    # the updates per FLOP (is its under-training what costs dds_unet_n2_min_half_gain 0.55 dB?)
    "dds_unet_n2_min_half_gain_largest4": dds(SLIMMABLE_UNET_HALF_SPACE, "gain", n=2, largest_every=4),
    # further: does the largest keep gaining from the smallest's updates when it runs on every 8th step only?
    "dds_unet_n2_min_half_gain_largest8": dds(SLIMMABLE_UNET_HALF_SPACE, "gain", n=2, largest_every=8),
    # and on every 16th: where does moving the compute to the smallest stop paying?
    "dds_unet_n2_min_half_gain_largest16": dds(SLIMMABLE_UNET_HALF_SPACE, "gain", n=2, largest_every=16),
    # that recipe one size down, between the doubling U-Nets 4 and 8 (3.9k and 15.3k FLOPs/pixel): does a router pay
    # where the larger member is the better network, as it is not between 8 and 16?
    "dds_unet8_n2_min_half_gain_largest8": dds(SLIMMABLE_UNET8_HALF_SPACE, "gain", n=2, largest_every=8),
    # that recipe, its candidates an NSGA-II front instead of progressive slimming's (the evolution -> gate)
    "evolution_gate_unet_n2_min_half_largest8": dds(SLIMMABLE_UNET_HALF_SPACE, "gain", n=2, evolve=True,
                                                    largest_every=8),
    "evolution": evolution(),
    # its random-search counterpart: the same sandwich, trials and retraining, architectures drawn at random
    "evolution_random": evolution("random"), "class_pruning": class_pruning(NM_SPACE),
    "class_pruning_unet": class_pruning(NM_UNET_SPACE),
    # its classifier at 16 channels, stride 3: 96 FLOPs/pixel, 0.5% of the 1:4 branch (32, 2: 1.7k, 8.8%)
    "class_pruning_unet_small_classifier": class_pruning(NM_UNET_SPACE, 16, 3),
    # the sparse branches' gradients reach only the weights they keep (nm_branches.py, vs dense: -0.25 -> -0.07 dB)
    "class_pruning_unet_masked": class_pruning(NM_UNET_SPACE, gradient="masked"),
    # ... routed: each image through about one branch, three times the batch at about the same compute per step
    # (nm_branches.py: +0.09-0.11 dB vs dense at the dense net's batch)
    "class_pruning_unet_masked_routed": class_pruning(NM_UNET_SPACE, gradient="masked", skip_below=0.01),
    # blind sigma in [0, 50] leaves the classifier unsure: at 1% about two pairs per image run, at 20% fewer
    "class_pruning_unet_masked_routed20": class_pruning(NM_UNET_SPACE, gradient="masked", skip_below=0.2),
    "dds_unet_largest_alone": trained_alone(SLIMMABLE_UNET_SPACE),
    # a sandwich step of 4 costs about two of the largest's: the updates dds_unet gave its largest (blind b1: 2149
    # against 4492 alone)
    "dds_unet_largest_alone_half": trained_alone(SLIMMABLE_UNET_SPACE, 0.5),
    "class_pruning_unet_dense_alone": trained_alone(NM_UNET_SPACE),
}


def run_entry(name: str, setting: str, budget: float, device: str, seed: int = 0, keep: bool = False) -> dict[str, Any]:
    """Run entry ``name``; its run folders (TensorBoard logs, checkpoints) are deleted after scoring unless ``keep``."""
    folder = Path(tempfile.mkdtemp(prefix=f"frontier-{name}-"))
    entry = Entry(name, setting, budget, device, folder, seed)
    started = time.perf_counter()
    result = ENTRIES[name](entry)
    scored = score(Path(result.pop("run_dir")), device, setting)
    if keep:
        print(f"  {name}: run folders kept in {folder}", flush=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"  {name}: {entry.flops:.3g} FLOPs ({entry.flops / (budget * BUDGET):.2f} of the budget), "
          f"{entry.seconds:.0f} s training, {time.perf_counter() - started:.0f} s in all", flush=True)
    return {**provenance(), "entry": name, "setting": setting, "budget": budget, "seed": seed, "device": device,
            "train_flops": entry.flops, "train_seconds": round(entry.seconds, 1), "plan": entry.plan, **result,
            **scored}


def bm3d_entry(setting: str, limit: int | None) -> dict[str, Any]:
    """BM3D 4.0.3 (``bm3d.bm3d(noisy, sigma / 255)``) on the same noisy images; no training."""
    import bm3d
    scores: dict[str, Any] = {}
    seconds = []
    for name in SETS:
        images = load_set(str(DATA / name), 1, "val")
        for sigma in SETTINGS[setting]["test"]:
            values = []
            for _, noisy, clean in evaluation_pairs(images, NoiseConfig(sigma=sigma), 0, limit=limit):
                start = time.perf_counter()
                out = bm3d.bm3d(noisy[0].double().numpy(), sigma / 255)
                seconds.append((time.perf_counter() - start) / noisy[0].numel() * 1e6)
                mse = float(np.mean((np.clip(out, 0, 1) - clean[0].double().numpy()) ** 2))
                values.append(10 * np.log10(1 / mse))
            scores[f"{name}_s{sigma:g}"] = round(float(np.mean(values)), 4)
            print(f"  bm3d {name} σ{sigma:g}: {scores[f'{name}_s{sigma:g}']:.2f} dB", flush=True)
    return {**provenance(), "entry": "bm3d", "family": "BM3D", "setting": setting, "budget": 0, "train_flops": 0,
            "images_per_set": limit or "all", "psnr": scores, "flops_per_pixel": None,
            "ms_per_megapixel": round(1000 * statistics.median(seconds), 1)}


# -- latency and report ----------------------------------------------------------------------------
def entry_latency(result: dict[str, Any], side: int = 512) -> float:
    """CPU milliseconds per megapixel of the entry's network (random weights: time does not depend on them);
    a dynamic network's candidates weighted by how often BSD68 chose them (over its test σ), plus its gate."""
    space = build_space(result["space"])
    model = build_network(space, result["spec"]).eval()
    x = torch.rand(1, 1, side, side)
    per_mp = 1e6 / side ** 2
    if result["spec"]["kind"] == "static":
        return 1000 * per_mp * measure_latency(model, x, runs=10)
    per_sigma = [v for k, v in result["psnr"].items() if k.startswith("bsd68") and k.endswith("_shares")]
    shares = [statistics.mean(column) for column in zip(*per_sigma)]  # over BSD68's σ, as its FLOPs are
    seconds = measure_latency(model.gate, x, runs=10)
    seconds += sum(s * measure_latency(c, x, runs=10) for s, c in zip(shares, model.candidates) if s > 0)
    return 1000 * per_mp * seconds


def bsd68_mean(by_test: dict[str, Any], setting: str) -> float:
    """The mean over BSD68's test σ of a figure stored per test (``bsd68_s25``, ...)."""
    return statistics.mean(by_test[f"bsd68_s{s:g}"] for s in SETTINGS[setting]["test"])


def headline(result: dict[str, Any]) -> float:
    """The figure the frontier is drawn with: mean BSD68 PSNR over the test σ of the result's setting."""
    return bsd68_mean(result["psnr"], result["setting"])


RANDOM_SEARCH_OF = {"mod_nas": "random_search", SHORT_SEARCH: "random_search_growth",
                    "evolution": "evolution_random"}  # method: its equal-compute rival


def report() -> None:
    every = [r for r in STORE.all() if "psnr" in r]
    results = [r for r in every if not r.get("seed")]
    rows, figures = [], {}
    for (setting, budget) in sorted({(r["setting"], r["budget"]) for r in results if r["budget"]}):
        group = [r for r in results if r["setting"] == setting and r["budget"] in (budget, 0)]
        statics = [(r["flops_per_pixel"], headline(r)) for r in group if r["family"].startswith("static")]
        line = frontier(statics)
        randoms = {r["entry"]: headline(r) for r in group if r["entry"] in RANDOM_SEARCH_OF.values()}
        figures[f"{setting}-b{budget:g}"] = {"frontier": line}
        for r in sorted(group, key=lambda r: (r["family"], r["flops_per_pixel"] or 0)):
            psnr = headline(r)
            gap = gap_to_frontier(line, (r["flops_per_pixel"], psnr)) if r["flops_per_pixel"] else None
            rows.append({"setting": setting, "budget": budget, "entry": r["entry"], "family": r["family"],
                         **{k: v for k, v in r["psnr"].items() if not k.endswith("_shares")},
                         "BSD68 headline": round(psnr, 3), "FLOPs/pixel": r["flops_per_pixel"] or "–",
                         "ms/MP (CPU)": r.get("ms_per_megapixel", "–"),
                         "train TFLOPs": round(r["train_flops"] / 1e12, 1), "train s": r.get("train_seconds", "–"),
                         "vs static frontier (dB)": "–" if gap is None else round(gap, 3),
                         "vs random search (dB)": round(psnr - randoms[RANDOM_SEARCH_OF[r["entry"]]], 3)
                         if RANDOM_SEARCH_OF.get(r["entry"]) in randoms else "–"})
    _plot(results)
    seeds = seed_rows(every, headline, BUDGET)
    body = (f"Budget 1 = {BUDGET:.0e} FLOPs of training compute per entry. PSNR in dB; the headline is BSD68 "
            f"(σ 25, or the mean over σ 15/25/50 in the blind setting). The static frontier is the best static "
            f"network at or below each FLOPs, read linearly in log-FLOPs and flat beyond the last (a cheaper static "
            f"network reaches it); '–' where a point is cheaper than every static network. FLOPs are per pixel, "
            f"2 per multiply-add. 'train s' is wall time on the machine named above.\n\n{markdown_table(rows)}\n"
            f"![frontier](frontier.png)\n\n## Training seeds\n\nThe table and figure above are seed 0. Entries rerun "
            f"with another training seed (`--seed`; same test images), headline PSNR @ FLOPs/pixel (the share of the "
            f"budget spent):\n\n"
            f"{markdown_table(seeds)}\n")
    print(write_report("frontier", {"rows": rows, "frontiers": figures, "seeds": seeds},
                       "Frontier benchmark: does the search pay?", body))


def _plot(results: list[dict[str, Any]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups = sorted({(r["setting"], r["budget"]) for r in results if r["budget"]})
    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 4.5 * len(groups)), squeeze=False)
    families = sorted({r["family"] for r in results})
    markers = "os^vDP*Xph<>"  # cycled with 20 colours: more families than markers must still be drawn
    styles = {family: (markers[i % len(markers)], matplotlib.colormaps["tab20"](i % 20))
              for i, family in enumerate(families)}
    for row, (setting, budget) in zip(axes, groups):
        group = [r for r in results if r["setting"] == setting and r["budget"] in (budget, 0)]
        line = frontier([(r["flops_per_pixel"], headline(r)) for r in group
                         if r["family"].startswith("static")])
        right = max(r["flops_per_pixel"] for r in group if r["flops_per_pixel"])
        row[0].plot([f for f, _ in line] + [right], [p for _, p in line] + [line[-1][1]], "k-", lw=1,
                    label="static frontier (flat beyond: a cheaper static network)")
        for family, (marker, colour) in styles.items():
            members = [r for r in group if r["family"] == family]
            if not members:
                continue
            psnr = [headline(r) for r in members]
            if members[0]["flops_per_pixel"] is None:
                row[0].axhline(psnr[0], ls="--", c=colour, label=family)
            else:
                row[0].plot([r["flops_per_pixel"] for r in members], psnr, marker, c=colour, label=family, ls="")
            timed = [(r["ms_per_megapixel"], p) for r, p in zip(members, psnr) if "ms_per_megapixel" in r]
            if timed:
                row[1].plot(*zip(*timed), marker, c=colour, label=family, ls="")
        row[0].set(xscale="log", xlabel="FLOPs per pixel", ylabel="BSD68 PSNR (dB)",
                   title=f"{setting}, budget {budget:g} × {BUDGET:.0e} FLOPs")
        row[1].set(xscale="log", xlabel="CPU ms per megapixel (2 cores)", ylabel="BSD68 PSNR (dB)")
        row[0].legend(fontsize=7)
        row[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "frontier.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run entries (each stored as it finishes)")
    p.add_argument("entries", nargs="+", help=f"'all', 'bm3d' or some of: {', '.join(ENTRIES)}")
    p.add_argument("--setting", choices=list(SETTINGS), default="sigma25")
    p.add_argument("--budget", type=float, default=1.0, help="multiple of the 6e13-FLOPs budget")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="training seed (the test images stay those of seed 0); the "
                   "report draws seed 0 and tables the spread of entries run with several")
    p.add_argument("--force", action="store_true", help="run entries again even if stored")
    p.add_argument("--keep", action="store_true", help="keep each entry's run folders (TensorBoard logs) in /tmp")
    p.add_argument("--bm3d-images", type=int, help="BM3D: the first N images of each set (default all)")
    sub.add_parser("list", help="the entries")
    sub.add_parser("latency", help="measure CPU ms per megapixel where missing (run alone on the machine)")
    sub.add_parser("report", help="aggregate the stored entries into bench/results/frontier.*")
    args = parser.parse_args()
    if args.command == "list":
        print("\n".join([*ENTRIES, "bm3d"]))
    elif args.command == "report":
        report()
    elif args.command == "latency":
        torch.set_num_threads(os.cpu_count() or 1)
        for result in STORE.all():
            if "ms_per_megapixel" not in result and "spec" in result:
                result["ms_per_megapixel"] = round(entry_latency(result), 1)
                STORE.save(entry_key(result["setting"], result["budget"], result["entry"], result.get("seed", 0)),
                           result)
                print(f"  {result['setting']} {result['entry']}: {result['ms_per_megapixel']} ms/MP", flush=True)
    else:
        if not (DATA / "train400").is_dir():
            raise SystemExit(f"skipped: {DATA}/train400 not found (set NASDEN_BENCH_DATA)")
        names = list(ENTRIES) if args.entries == ["all"] else args.entries
        for name in names:
            if name == "bm3d":
                STORE.run(f"{args.setting}-b0-bm3d", lambda: bm3d_entry(args.setting, args.bm3d_images), args.force)
            elif name not in ENTRIES:
                raise SystemExit(f"unknown entry {name!r}; see `python bench/frontier.py list`")
            else:
                STORE.run(entry_key(args.setting, args.budget, name, args.seed),
                          lambda n=name: run_entry(n, args.setting, args.budget, args.device, args.seed, args.keep),
                          args.force)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
