"""``evaluate``: PSNR, SSIM, FLOPs/pixel and latency of the run's network on named test sets."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from nasden.common.atomic import atomic_write
from nasden.common.registry import register_strategy
from nasden.core.cost import measure_latency
from nasden.core.extract import extract
from nasden.core.space import SearchSpace
from nasden.core.specs import static_spec
from nasden.core.supernet import recalibrate_bn
from nasden.data.image_sets import is_pair_set
from nasden.deploy.scoring import evaluate_network, markdown_table
from nasden.pipeline.run import StageContext
from nasden.pipeline.strategy import Strategy
from nasden.strategies.train import check_arch_option, choose_arch


@dataclass
class EvaluateConfig:
    """``sets``: ``val`` (the recipe's validation images and noise, cropped as ``data.val_crop`` says),
    ``builtin``, dataset names (``bsd68``, ``polyu:test``), or image folders (or names under $NASDEN_DATA),
    every image whole. ``sigma``: evaluate at this AWGN level instead of the recipe's noise.
    ``network``: ``final`` (the run's final network; else the chosen architecture of the supernet), or a
    sub-network of the supernet: ``largest``, ``smallest`` or an explicit ``{label: value}``."""

    sets: list[str] = field(default_factory=lambda: ["val"])
    network: Literal["final", "largest", "smallest"] | dict[str, Any] = "final"
    sigma: float | None = None
    latency_size: int = 256
    latency_runs: int = 10

    def __post_init__(self) -> None:
        if not self.sets:
            raise ValueError("sets: expected at least one set")
        if self.sigma is not None and not 0 <= self.sigma <= 255:
            raise ValueError(f"sigma: expected a number in [0, 255], got {self.sigma}")
        if not 8 <= self.latency_size <= 4096 or not 1 <= self.latency_runs <= 1000:
            raise ValueError("latency_size: expected 8..4096 and latency_runs 1..1000")


@register_strategy("evaluate")
class Evaluate(Strategy):
    """Score the run's final network (or the chosen architecture) on test sets; JSON + Markdown table."""

    Config = EvaluateConfig
    summary_keys = frozenset({"network", "latency_ms", "device", "threads", "sets"})
    smoke_options = {"latency_size": 16, "latency_runs": 2}

    def check_space(self, space: SearchSpace) -> None:
        check_arch_option("network", self.config.network, space)

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        if cfg.network == "final" and run.final is not None and run.final_spec is not None:
            model, spec = run.final, run.final_spec
        else:
            arch = choose_arch(run, "auto" if cfg.network == "final" else cfg.network)
            recalibrate_bn(run.supernet, arch, run.calibration_batches(8))
            spec = static_spec(arch)
            model = extract(run.supernet, arch).eval()
        rows = []
        for name in cfg.sets:
            if name == "val" and cfg.sigma is None:
                pairs = run.data.val
            else:
                pairs = run.data.test_set(run.recipe.data.val if name == "val" else name, cfg.sigma, name == "val")
            noise = run.recipe.data.noise
            source = run.recipe.data.val if name == "val" else name
            sigma = cfg.sigma if cfg.sigma is not None else noise.levels or noise.sigma
            if is_pair_set(source):
                sigma = "real"
            rows.append({**evaluate_network(model, run.space, spec, pairs, name), "sigma": sigma})
            ctx.say(f"  {name}: PSNR {rows[-1]['psnr']:.2f} dB, SSIM {rows[-1]['ssim']:.4f}, "
                    f"{rows[-1]['flops_per_pixel']:.4g} FLOPs/pixel ({rows[-1]['images']} images)")
        ctx.log_denoised(model, 0)
        example = torch.rand(1, run.space.in_channels, cfg.latency_size, cfg.latency_size, device=run.device)
        latency = measure_latency(model, example, runs=cfg.latency_runs)
        threads = torch.get_num_threads()
        note = (f"\nLatency ({run.device.type}, {threads} threads, 1×{cfg.latency_size}×{cfg.latency_size}): "
                f"{1000 * latency:.2f} ms\n")
        atomic_write(ctx.dir / "results.md", lambda tmp: Path(tmp).write_text(markdown_table(rows) + note))
        return {"network": spec, "latency_ms": round(1000 * latency, 3), "device": run.device.type, "threads": threads,
                "sets": rows}
