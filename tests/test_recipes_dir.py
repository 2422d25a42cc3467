"""Every recipe in recipes/ validates, opens with the command that runs it, and the quick ones run."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nasden.data import datasets
from nasden.pipeline.recipe import load_recipe
from nasden.pipeline.run import create_run, execute

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_recipe_validates_and_names_its_command(path: Path) -> None:
    assert path.read_text().splitlines()[0] == f"# nasden search recipes/{path.name}"
    assert "shared/data" not in path.read_text(), "recipes name their datasets (train400, bsd68, ...)"
    recipe = load_recipe(path)  # dataset names pass without the data: they are fetched when the run starts
    assert recipe.build_space().nodes


QUICK = [p for p in RECIPES if "quick" in p.stem]


def run_tiny(path: Path, folder: Path, evaluate_on: list[str] | None = None) -> list[dict]:
    """The recipe at tiny settings (``evaluate_on``: the evaluate stages' sets instead of the recipe's)."""
    recipe = load_recipe(path)
    recipe.data = dataclasses.replace(recipe.data, batch=2, val_images=1, val_crop=96)
    for stage in recipe.stages:
        for name, tiny in (("steps", 2), ("latency_size", 16), ("latency_runs", 1), ("calibration_batches", 1),
                           ("val_size", 32), ("warmup", 1)):
            if hasattr(stage.options, name):
                setattr(stage.options, name, tiny)
        if evaluate_on and stage.strategy == "evaluate":
            stage.options.sets = evaluate_on
    summaries = execute(create_run(recipe, folder / "run"), quiet=True)
    assert len(summaries) == len(recipe.stages)
    return summaries


@pytest.mark.parametrize("path", QUICK, ids=[p.name for p in QUICK])
def test_quick_recipe_runs_with_tiny_settings(path: Path, tmp_path: Path) -> None:
    run_tiny(path, tmp_path)


def test_real_noise_recipe_runs_on_the_real_pairs(tmp_path: Path) -> None:
    if datasets.find("polyu") is None:
        pytest.skip("polyu is neither under $NASDEN_DATA nor in the cache")
    # polyu:val (one image at tiny settings) stands for polyu:test, whose 31 whole images take too long here
    [row] = run_tiny(RECIPES[0].parent / "real_noise.yaml", tmp_path, ["val"])[-1]["sets"]
    assert row["sigma"] == "real" and row["images"] == 1 and 30 < row["input_psnr"] < 42
