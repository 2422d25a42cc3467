"""Conformance suite for routing gates: what every registered gate promises, checked in seconds.

:func:`check_gate` checks, for one gate (built-in or registered by a package through the ``nasden.gates``
entry points):

1. it builds over a small supernet with its default options, and states its cost (``flops_per_pixel``, a
   finite number ≥ 0);
2. its ``spec`` is JSON that names it and its candidates, and rebuilds it (:func:`gate_from_spec`) with the
   same parameters, computing the same logits;
3. it routes: a batch gives finite logits ``[N, E]``, and a dynamic denoiser over it sends every image to
   one of its E candidates;
4. a model file holding it loads on its own and computes what was saved;
5. a recipe can name it: a ``gate`` stage with ``gate: <name>`` runs to a dynamic final network.

A package checks its gate with no test of its own but::

    from nasden.testing.gates import check_gate
    def test_my_gate(tmp_path):
        check_gate("my_gate", tmp_path)
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from nasden.core.dynamic import DynamicDenoiser
from nasden.core.gates import build_gate, gate_from_spec
from nasden.core.specs import build_space, dynamic_spec
from nasden.core.supernet import Supernet
from nasden.data.noise import NoiseConfig
from nasden.deploy import model_file
from nasden.deploy.denoiser import load
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute

SPACE = {"name": "slimmable", "depth": 3, "channels": 16}
CANDIDATES = 2


def check_gate(name: str, tmp_path: Path) -> None:
    """Run the checks above on the registered gate ``name``; an ``AssertionError`` says which failed."""
    torch.manual_seed(0)
    space = build_space(SPACE)
    supernet = Supernet(space).eval()
    gate = build_gate(supernet, name, CANDIDATES).eval()
    flops = getattr(gate, "flops_per_pixel", None)
    assert isinstance(flops, (int, float)) and math.isfinite(flops) and flops >= 0, \
        f"gate {name!r}: flops_per_pixel must be a finite number >= 0, got {flops!r}"

    spec = getattr(gate, "spec", None)
    assert isinstance(spec, dict) and json.loads(json.dumps(spec)) == spec, f"gate {name!r}: spec is not JSON: {spec!r}"
    assert spec.get("kind") == name and spec.get("candidates") == CANDIDATES, \
        f"gate {name!r}: its spec must name it (kind) and its candidates, got {spec!r}"
    rebuilt = gate_from_spec(supernet, spec).eval()
    rebuilt.load_state_dict(gate.state_dict())
    x = torch.rand(4, space.in_channels, 32, 32)
    with torch.no_grad():
        logits = gate(x)
        assert logits.shape == (4, CANDIDATES) and bool(torch.isfinite(logits).all()), \
            f"gate {name!r}: expected finite logits of shape (4, {CANDIDATES}), got {tuple(logits.shape)}"
        torch.testing.assert_close(rebuilt(x), logits, msg=f"gate {name!r}: rebuilt from its spec, it routes otherwise")

    archs = [space.smallest(), space.largest()]
    dynamic = DynamicDenoiser(gate, supernet, archs, [1.0, 2.0]).eval()
    with torch.no_grad():
        choices = dynamic.route(x)
    assert choices.shape == (4,) and set(choices.tolist()) <= set(range(CANDIDATES)), \
        f"gate {name!r}: routed to {choices.tolist()}, not to one of {CANDIDATES} candidates"

    trained_on = {"train": "builtin", "noise": dataclasses.asdict(NoiseConfig()), "real_noise": False}
    model_file.save(dynamic, dynamic_spec(dynamic), tmp_path / "gated.pt", SPACE, trained_on)
    loaded = load(tmp_path / "gated.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), dynamic(x), msg=f"gate {name!r}: its model file computes otherwise")

    recipe = parse_recipe({
        "name": "gate-conformance", "seed": 0, "device": "cpu",
        "data": {"patch": 16, "batch": 2, "val_images": 1, "val_crop": 32},
        "space": SPACE,
        "stages": [{"strategy": "progressive_slimming", "group": 8, "val_images": 1, "val_size": 16},
                   {"strategy": "gate", "gate": name, "candidates": CANDIDATES, "steps": 2, "checkpoint_every": 2,
                    "calibration_batches": 1}],
    }, f"<gate {name} conformance>")
    run_dir = create_run(recipe, tmp_path / "run")
    execute(run_dir, quiet=True)
    final = load(run_dir)
    assert final.dynamic and final.spec["gate"]["kind"] == name, f"gate {name!r}: a recipe naming it ends elsewhere"
