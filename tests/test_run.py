from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from nasden.cli import main
from nasden.common.errors import StageFailed
from nasden.common.storage import load_torch
from nasden.data.noise import NoiseConfig
from nasden.deploy.model_file import load as load_final
from nasden.deploy.scoring import score
from nasden.pipeline.recipe import parse_recipe
from nasden.pipeline.run import create_run, execute, open_run
from nasden.testing.conformance import without_timings

TINY = {
    "name": "tiny", "seed": 5, "device": "cpu",
    "data": {"patch": 16, "batch": 4, "val_images": 2, "val_crop": 48, "noise": {"sigma": 25}},
    "space": {"name": "dncnn", "depth": 3, "channels": 8},
    "stages": [{"strategy": "train", "steps": 30, "checkpoint_every": 10, "val_every": 15},
               {"strategy": "evaluate", "latency_size": 32, "latency_runs": 2}],
}


def recipe_file(tmp_path, data=TINY, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_search_denoise_export_eval(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["search", str(recipe_file(tmp_path)), "--out", str(run), "--quiet"]) == 0
    for name in ("recipe.yaml", "context.pt", "final.pt", "stages/00-train/result.json",
                 "stages/01-evaluate/result.json", "stages/01-evaluate/results.md"):
        assert (run / name).exists(), name
    assert list((run / "tensorboard").iterdir())
    result = json.loads((run / "stages/01-evaluate/result.json").read_text())
    assert result["sets"][0]["psnr"] > result["sets"][0]["input_psnr"]  # it learned to denoise

    noisy = np.clip(np.random.default_rng(0).normal(128, 25, (40, 50)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    assert main(["denoise", str(run), str(tmp_path / "noisy.png"), str(tmp_path / "clean.png")]) == 0
    out = np.asarray(Image.open(tmp_path / "clean.png"))
    assert out.shape == (40, 50) and out.std() < noisy.std()
    (tmp_path / "folder").mkdir()
    Image.fromarray(noisy).save(tmp_path / "folder" / "a.PNG")
    assert main(["denoise", str(run), str(tmp_path / "folder"), str(tmp_path / "outs")]) == 0
    assert (tmp_path / "outs" / "a.png").exists()

    capsys.readouterr()
    assert main(["denoise", str(run), str(tmp_path / "noisy.png"), str(tmp_path / "s50.png"), "--sigma", "50"]) == 0
    assert "warning: this model was trained on AWGN sigma 25.0, not AWGN sigma 50" in capsys.readouterr().err
    assert main(["denoise", str(run), str(tmp_path / "noisy.png"), str(tmp_path / "x.png"), "--route-map", "m"]) == 2
    assert main(["denoise", str(run), str(tmp_path / "noisy.png"), str(tmp_path / "x.png"), "--cost-bias", "1"]) == 2

    assert main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "export")]) == 0
    scripted = torch.jit.load(str(tmp_path / "export" / "denoiser.pt"))
    loaded = load_final(run)
    spec, model = loaded.spec, loaded.network
    assert spec["kind"] == "static"
    x = torch.rand(1, 1, 24, 20)
    torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=0)
    assert json.loads((tmp_path / "export" / "manifest.json").read_text())["in_channels"] == 1

    capsys.readouterr()
    assert main(["eval", str(run), "--data", "builtin", "--sigma", "15", "--crop", "48"]) == 0
    assert "| builtin |" in capsys.readouterr().out
    assert main(["eval", str(run), "--data", str(tmp_path / "nope")]) == 2
    assert main(["search", str(recipe_file(tmp_path)), "--out", str(run)]) == 2  # refuses to overwrite a run


def _context_weights(run_dir):
    context = load_torch(run_dir / "context.pt")
    final = context["final"]["state_dict"] if context["final"] else {}
    return {**context["supernet"], **{f"final.{k}": v for k, v in final.items()}}


SLIMMABLE = {"name": "slimmable", "depth": 3, "channels": 16}
KILLED_STAGES = {  # stage kind → (space, stages); the last stage is killed after its first checkpoint
    "train": (TINY["space"], [{"strategy": "train", "steps": 300, "checkpoint_every": 5, "val_every": 300}]),
    "sandwich": (SLIMMABLE, [{"strategy": "sandwich", "steps": 200, "checkpoint_every": 5, "val_every": 200,
                              "val_size": 32}]),
    "gate": (SLIMMABLE, [{"strategy": "sandwich", "steps": 5, "val_size": 32},
                         {"strategy": "progressive_slimming", "group": 8, "val_images": 1, "val_size": 32},
                         {"strategy": "gate", "candidates": 3, "steps": 200, "checkpoint_every": 5}]),
    "joint_finetune": ({"name": "nm_branches", "depth": 3, "channels": 8},
                       [{"strategy": "classifier_pretrain", "steps": 5, "channels": 8, "pool_batches": 2},
                        {"strategy": "branch_train", "steps": 5, "val_every": 5},
                        {"strategy": "joint_finetune", "steps": 200, "checkpoint_every": 5, "val_every": 200}]),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KILLED_STAGES))
def test_kill_9_then_resume_matches_uninterrupted_run(kind: str, tmp_path) -> None:
    space, stages = KILLED_STAGES[kind]
    path = recipe_file(tmp_path, {**TINY, "space": space, "stages": stages})
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "nasden.cli", "search", str(path), "--out", str(killed),
                                "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = killed / "stages" / f"{len(stages) - 1:02d}-{kind}" / "checkpoint.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(list((killed / "stages").glob("*/result.json"))) == len(stages) - 1, "killed at the wrong moment"
    assert 0 < load_torch(checkpoint)["step"] < stages[-1]["steps"]
    assert main(["resume", str(killed), "--quiet"]) == 0

    straight = tmp_path / "straight"
    assert main(["search", str(path), "--out", str(straight), "--quiet"]) == 0
    a, b = _context_weights(killed), _context_weights(straight)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    for result in sorted((killed / "stages").glob("*/result.json")):
        twin = straight / "stages" / result.parent.name / "result.json"
        assert without_timings(json.loads(result.read_text())) == without_timings(json.loads(twin.read_text()))


def test_nan_loss_stops_the_stage_and_keeps_the_last_checkpoint(tmp_path, monkeypatch) -> None:
    from nasden.data.image_sets import PatchSampler
    original = PatchSampler.batch

    def poisoned(self, step, batch=None, stream=0, patch=None, shard=None):
        noisy, clean = original(self, step, batch, stream, patch, shard)
        return (noisy * float("nan"), clean) if step >= 13 else (noisy, clean)

    monkeypatch.setattr(PatchSampler, "batch", poisoned)
    run = create_run(parse_recipe(TINY), tmp_path / "run")
    with pytest.raises(StageFailed, match=r"loss became nan at step 13; the last checkpoint before it \(step 10\)"):
        execute(run, quiet=True)
    assert load_torch(run / "stages/00-train/checkpoint.pt")["step"] == 10
    monkeypatch.setattr(PatchSampler, "batch", original)
    assert len(execute(run, quiet=True)) == 2  # resumes from step 10 once the data is fixed


def test_rgb_unet_run(tmp_path) -> None:
    data = {**TINY, "space": {"name": "unet", "levels": 2, "channels": 8, "image_channels": 3},
            "data": {**TINY["data"], "val_crop": 45},  # not a multiple of 4: evaluation pads and crops back
            "stages": [{"strategy": "train", "steps": 4}]}
    run = create_run(parse_recipe(data), tmp_path / "run")
    summaries = execute(run, quiet=True)
    model = load_final(run).network
    val = open_run(run, quiet=True).data.val
    assert all(noisy.shape[0] == 3 and noisy.shape[-1] == 45 for _, noisy, _ in val)
    # final.pt is the validated network, and scoring it pads 45 to 48 and crops back like the stage did
    assert score(model, val, "val", multiple=4).psnr == pytest.approx(summaries[0]["val_psnr"], abs=1e-3)


def test_choice_probabilities_are_logged_per_label_and_candidate(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nasden.pipeline.tensorboard_log import log_choice_probabilities, open_writer
    writer = open_writer(tmp_path)
    log_choice_probabilities(writer, {"op:c1": {"conv3x3": 0.7, "conv5x5": 0.3}}, step=5)
    writer.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["arch/op:c1/conv3x3", "arch/op:c1/conv5x5"]
    assert events.Scalars("arch/op:c1/conv3x3")[0].value == pytest.approx(0.7)


def test_choice_layout_groups_each_label_in_one_chart(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nasden.pipeline.tensorboard_log import add_choice_layout, open_writer
    writer = open_writer(tmp_path)
    add_choice_layout(writer, {"op:c1": {"conv3x3": 0.7, "conv5x5": 0.3}, "input:c2": {"a": 0.5, "b": 0.5}})
    writer.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    layout = events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]  # a serialised Layout
    assert b"arch/op:c1/conv3x3" in layout and b"arch/op:c1/conv5x5" in layout and b"architecture: input" in layout


def test_ls_prints_whole_first_sentences(capsys) -> None:
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "pseudo labels (Eq. 2-3) with cross-entropy." in out
    described = out.split("ops:")[0]  # spaces, strategies and gates by their docstrings; ops by their class
    assert all(line.rstrip().endswith((".", ")")) for line in described.splitlines() if line.startswith("  "))
    assert "  conv3x3                DynamicConv(kernel=3): N:M sparsity" in out


def test_one_architecture_retrained_per_sigma(tmp_path) -> None:
    recipe = {**TINY, "stages": [{"strategy": "train", "steps": 2, "sigma": 15},
                                 {"strategy": "evaluate", "sets": ["val"], "sigma": 15, "latency_size": 16,
                                  "latency_runs": 1},
                                 {"strategy": "train", "steps": 2, "sigma": 50}]}
    summaries = execute(create_run(parse_recipe(recipe), tmp_path / "run"), quiet=True)
    # two steps from scratch: each network is near its noisy input, whose PSNR sets the level
    assert summaries[0]["val_psnr"] > summaries[2]["val_psnr"] + 5
    assert summaries[1]["sets"][0]["sigma"] == 15 and summaries[1]["sets"][0]["input_psnr"] > 24
    sampler = open_run(tmp_path / "run", quiet=True).data.sampler
    noisy, clean = sampler.with_noise(NoiseConfig(sigma=50)).batch(0)
    assert 255 * (noisy - clean).std() == pytest.approx(50, rel=0.1)
    assert sampler.noise.sigma == 25  # the recipe's own sampler is unchanged


def test_training_by_compute_sets_steps_from_the_architecture_it_trains(tmp_path) -> None:
    compute = 3e9
    recipe = {**TINY, "space": {"name": "slimmable", "depth": 3, "channels": 8, "group": 2, "min_ratio": 0.25},
              "stages": [{"strategy": "train", "compute": compute, "arch": arch, "val_every": 1000}
                         for arch in ("smallest", "largest")]}
    summaries = execute(create_run(parse_recipe(recipe), tmp_path / "run"), quiet=True)
    pixels = 4 * 16 ** 2  # the recipe's batch × patch²
    for summary in summaries:
        assert summary["steps"] == round(compute / (3 * summary["flops_per_pixel"] * pixels))
    assert summaries[0]["steps"] > summaries[1]["steps"] > 1  # the cheaper network trains for more steps


@pytest.mark.parametrize("options, message", [({"steps": 10, "compute": 1e9}, "give one"),
                                              ({"compute": -1.0}, "training FLOPs")])
def test_training_compute_refuses_bad_options(options, message) -> None:
    with pytest.raises(Exception, match=message):
        parse_recipe({**TINY, "stages": [{"strategy": "train", **options}]})
