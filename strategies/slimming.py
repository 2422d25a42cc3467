"""``progressive_slimming``: DDS-Net stage 2 (Algorithm 1), the greedy search for the routing space.

From the largest architecture, each step tries removing one channel group from each width label
in turn, scores every candidate on the validation batch (cached on the device, no autograd, BN
recalibrated per candidate if the space has BN), and keeps the best. Every kept architecture is
recorded with its FLOPs/pixel and PSNR until the smallest is reached; the record (the routing
space A*) becomes the run's candidate list for a following ``gate`` stage.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nasden.common.registry import register_strategy
from nasden.common.storage import save_json
from nasden.core.cost import cost
from nasden.core.space import Architecture, Choice
from nasden.deploy.scoring import arch_psnr
from nasden.pipeline.plots import psnr_flops_figure, save_png
from nasden.pipeline.run import StageContext
from nasden.pipeline.strategy import Strategy


@dataclass
class SlimmingConfig:
    """``group``: channels removed from one width label per step (16 in the paper)."""

    group: int = 16
    val_images: int = 8
    val_size: int = 128
    calibration_batches: int = 8

    def __post_init__(self) -> None:
        for name in ("group", "val_images", "val_size", "calibration_batches"):
            if not 1 <= getattr(self, name) <= 100_000:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")


def slimmer(choice: Choice, width: int, group: int) -> int | None:
    """The width after removing ``group`` channels (the nearest allowed width at or below), or None at the minimum."""
    if width == min(choice.values):
        return None
    allowed = [w for w in choice.values if w <= width - group]
    return max(allowed) if allowed else min(choice.values)


@register_strategy("progressive_slimming")
class ProgressiveSlimming(Strategy):
    """Greedy progressive slimming from the largest to the smallest width configuration (DDS-Net stage 2)."""

    Config = SlimmingConfig
    summary_keys = frozenset({
        "architectures", "evaluations", "largest", "smallest", "routing_space", "elapsed_seconds"})
    provides = frozenset({"candidates"})
    space_choices = frozenset({"width"})
    smoke_options = {"group": 4, "val_images": 1, "val_size": 16, "calibration_batches": 1}

    def _run(self, ctx: StageContext) -> dict[str, Any]:
        cfg, run = self.config, ctx.run
        widths = {label: c for label, c in run.space.choices().items() if c.kind == "width"}
        if not widths:
            raise ValueError(f"progressive_slimming needs width choices; space {run.space.name!r} has none")
        noisy, clean = (t.to(run.device) for t in run.data.val_batch(cfg.val_size, cfg.val_images))
        calibration = run.calibration_batches(cfg.calibration_batches)

        def entry(arch: Architecture) -> dict[str, Any]:
            c = cost(run.space, arch)
            psnr = arch_psnr(run.supernet, arch, noisy, clean, calibration).mean().item()
            return {"arch": arch, "flops_per_pixel": c.flops_per_pixel, "params": c.params, "psnr": round(psnr, 4)}

        started = time.perf_counter()
        state = ctx.load_checkpoint() or {"record": [entry(run.space.largest())], "evaluations": 1}
        record, evaluations = state["record"], state["evaluations"]
        arch = dict(record[-1]["arch"])
        total_steps = sum(len([w for w in c.values if w < max(c.values)]) for c in widths.values())
        with ctx.progress(total_steps, len(record) - 1) as bar:
            while True:
                trials = []
                for label, choice in sorted(widths.items()):
                    width = slimmer(choice, arch[label], cfg.group)
                    if width is not None:
                        trials.append(entry({**arch, label: width}))
                if not trials:
                    break
                evaluations += len(trials)
                best = max(trials, key=lambda t: (t["psnr"], -t["flops_per_pixel"]))
                arch = dict(best["arch"])
                record.append(best)
                ctx.save_checkpoint({"record": record, "evaluations": evaluations})
                bar.update()
        seconds = time.perf_counter() - started
        run.candidates = record
        save_json(record, ctx.dir / "routing_space.json")
        points = [(e["flops_per_pixel"], e["psnr"]) for e in record]
        figure = psnr_flops_figure({"progressive slimming": points}, "routing space (validation PSNR)")
        save_png(figure, ctx.dir / "routing_space.png")
        run.writer.add_figure(f"{ctx.tag}/routing_space", figure, 0)
        ctx.log_subnetwork(record[0]["arch"], 0, "largest")
        ctx.log_subnetwork(record[-1]["arch"], 0, "smallest")
        ctx.say(f"  {len(record)} architectures from {record[0]['flops_per_pixel']:.4g} to "
                f"{record[-1]['flops_per_pixel']:.4g} FLOPs/pixel; {evaluations} evaluations in {seconds:.1f} s")
        return {"architectures": len(record), "evaluations": evaluations, "elapsed_seconds": round(seconds, 3),
                "largest": {k: record[0][k] for k in ("flops_per_pixel", "psnr")},
                "smallest": {k: record[-1][k] for k in ("flops_per_pixel", "psnr")},
                "routing_space": "routing_space.json"}
