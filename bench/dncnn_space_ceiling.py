"""How good can a search of bench/darts_vs_nni.py's space get? Hand-picked architectures of that space, each retrained
exactly as that benchmark retrains a derived network, beside the plain conv-3×3 DnCNN of its FLOPs (issue "MoD-NAS").

The benchmark's goal asks for a derived network above the plain conv-3×3 one of its FLOPs. That is only reachable if
some architecture of the space is above it: this measures a few candidates a search could find (dilated convolutions
at a 3×3's cost, larger kernels, a search's derivation with its identity layers turned back into convolutions).
Each result is written to bench/results/<name>.json as it finishes.

    cd bench && python dncnn_space_ceiling.py [--seed 1] [--name NAME]
"""
from __future__ import annotations

import argparse
from typing import Any

import torch
from darts_vs_nni import SPACE, add_data_arguments, plain_conv3x3, retrain

from record import write_json

LAYERS = [f"op:conv{i}" for i in range(2, 8)]  # the six searchable layers
CANDIDATES = {
    "conv3x3 everywhere": ["conv3x3"] * 6,
    "dilated 3x3 every other layer": ["conv3x3", "dilconv3x3"] * 3,
    "dilated 3x3 in the middle four": ["conv3x3", *["dilconv3x3"] * 4, "conv3x3"],
    "dilated 3x3 everywhere": ["dilconv3x3"] * 6,
    "shrink's derivation without identity (conv 5x5 x3, dilated 3x3 x3)": ["conv5x5"] * 3 + ["dilconv3x3"] * 3,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", type=int, default=1500)
    add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="the retrained networks' initialisation")
    parser.add_argument("--name", default="dncnn_space_ceiling", help="results file name")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"setup": {"space": SPACE, "retrain_steps": args.retrain, "seed": args.seed},
                               "architectures": {}, "plain": {}}
    for name, ops in CANDIDATES.items():
        print(f"retraining {name} ...", flush=True)
        searched = retrain(dict(zip(LAYERS, ops)), SPACE, args)
        options, arch = plain_conv3x3(searched["flops_per_pixel"])
        depth = str(options["depth"])
        if depth not in results["plain"]:
            print(f"retraining the plain conv 3x3 net of depth {depth} ...", flush=True)
            results["plain"][depth] = retrain(arch, options, args)
        gap = searched["psnr"] - results["plain"][depth]["psnr"]
        results["architectures"][name] = {"ops": ops, **searched, "plain_depth": int(depth),
                                          "vs_plain_db": round(gap, 3)}
        write_json(args.name, results)
        print(f"  {searched['psnr']:.3f} dB at {searched['flops_per_pixel'] / 1e3:.1f}k FLOPs/pixel; plain depth "
              f"{depth}: {results['plain'][depth]['psnr']:.3f} ({gap:+.3f})", flush=True)


if __name__ == "__main__":
    main()
