"""DDS-Net's distillation ablation: does a teacher that joins late help the sub-networks?

The slimmable DnCNN of ``dds_vs_static.py`` (same data, noise and sizes) trained by the sandwich rule for
``--steps`` steps with each distillation variant, then its largest and smallest sub-networks scored on
Set12 and BSD68. ``synergy`` and ``inplace`` distil from the first step (the paper); ``*_late`` only from
the middle of the training on, the teachers' share of the targets rising linearly to 1 at the end
(``distill_ramp: [0.5, 1.0]``); ``none`` trains every sub-network on the ground truth.

    python bench/dds_distillation.py [--steps 1000] [--variants none synergy synergy_late]

Results: bench/results/dds_distillation.{json,md}.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from dds_vs_static import add_setting_arguments, base, run, test_stage

from nasden.deploy.scoring import markdown_table
from record import write_report

VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"distill": "none"},
    "inplace": {"distill": "inplace"},
    "synergy": {"distill": "synergy"},
    "inplace_late": {"distill": "inplace", "distill_ramp": [0.5, 1.0]},
    "synergy_late": {"distill": "synergy", "distill_ramp": [0.5, 1.0]},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["none", "synergy", "synergy_late"])
    add_setting_arguments(parser)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dds_distillation-"))
    rows = []
    for variant in args.variants:
        sandwich = {"strategy": "sandwich", "n": 4, "steps": args.steps, "val_every": args.steps, "val_size": 96,
                    **VARIANTS[variant]}
        stages = [sandwich, test_stage(args, network="largest"), test_stage(args, network="smallest")]
        _, summaries = run(base(args, f"sandwich-{variant}", stages), folder)
        row: dict[str, Any] = {"variant": variant}
        for which, summary in (("largest", summaries[1]), ("smallest", summaries[2])):
            row.update({f"{which} {Path(s['set']).name}": s["psnr"] for s in summary["sets"]})
        rows.append(row)
        print(markdown_table(rows), flush=True)
    body = (f"Slimmable DnCNN, {args.depth} layers × up to {args.channels} channels, {args.steps} sandwich steps "
            f"(n = 4), σ {args.sigma}; PSNR (dB) of the largest and smallest sub-networks.\n\n" + markdown_table(rows))
    print(write_report("dds_distillation", {"settings": vars(args), "rows": rows},
                       "DDS-Net distillation ablation", body))


if __name__ == "__main__":
    main()
