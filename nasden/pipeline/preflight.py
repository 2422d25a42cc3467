"""What a run checks before it starts, without training: memory, then data. ``nasden validate`` runs it,
and ``nasden search`` runs it before it makes the run folder, so the two refuse the same recipes.

Memory comes first, before anything large is allocated: the supernet's weights from the space's cost, a
training step's activations measured on a small input and scaled to each stage's batch and patch
(:mod:`nasden.core.activations`). Then the data is loaded as the run would load it, and each stage checks the
options that depend on it (:meth:`Strategy.check_data`).
"""
from __future__ import annotations

import functools
from pathlib import Path

from nasden.common.errors import NasdenError, RecipeError
from nasden.common.memory import check_fits
from nasden.common.registry import STRATEGIES
from nasden.core.activations import parameter_bytes, pixel_bytes
from nasden.core.cost import cost
from nasden.core.space import SearchSpace
from nasden.core.supernet import Supernet
from nasden.data import datasets
from nasden.data.image_sets import RunData
from nasden.pipeline.recipe import Recipe
from nasden.pipeline.run import resolve_device


def preflight(recipe: Recipe, download: bool = True) -> str:
    """Refuse a recipe the run would refuse at its start (one :class:`RecipeError` line); a summary of the
    data otherwise. Without ``download`` a named dataset that is not here yet is not fetched, and the data
    checks wait for the run."""
    space = recipe.build_space()
    _check_memory(recipe, space)
    missing = [name for name in _dataset_names(recipe) if datasets.find(name) is None]
    if missing and not download:
        verb = "is" if len(missing) == 1 else "are"
        return f"not checked yet ({', '.join(sorted(missing))} {verb} downloaded when the run starts)"
    data = RunData(recipe.data, space.in_channels, recipe.seed)
    try:
        training, validation = data.sampler, data.val
    except NasdenError as err:
        raise RecipeError(f"{recipe.source}: data: {err}") from None
    for index, stage in enumerate(recipe.stages):
        try:
            STRATEGIES.get(stage.strategy)(stage.options).check_data(data)
        except NasdenError as err:
            raise RecipeError(f"{recipe.source}: stages.{index} ({stage.strategy}): {err}") from None
    return f"{len(training.clean)} training images, {len(validation)} validation pairs"


def _dataset_names(recipe: Recipe) -> set[str]:
    sources = (datasets.split_source(getattr(recipe.data, key))[0] for key in ("train", "val"))
    return {name for name in sources if name in datasets.names() and not Path(name).is_dir()}


def _check_memory(recipe: Recipe, space: SearchSpace) -> None:
    fits = functools.partial(check_fits, device=resolve_device(recipe.device))
    largest = space.largest()
    mixed = max((len(c.values) for c in space.choices().values() if c.kind == "op"), default=1)
    supernet_params = cost(space, largest).params * mixed  # every op candidate holds its widest weights
    fits(parameter_bytes(supernet_params), f"{recipe.source}: the supernet's {supernet_params:.3g} weights",
         "use fewer channels or layers")
    per_pixel = pixel_bytes(Supernet(space), space.in_channels, space.resolution_multiple, arch=largest)
    data = recipe.data
    for index, stage in enumerate(recipe.stages):
        options, strategy = stage.options, STRATEGIES.get(stage.strategy)
        batch = getattr(options, "batch", None) or data.batch
        patch = getattr(options, "patch", None) or data.patch
        where = f"{recipe.source}: stages.{index} ({stage.strategy}): a step on batch {batch} × {patch}² patches"
        if not strategy.trains_network:
            fits(per_pixel.inference(batch * patch ** 2), where, "lower the batch or the patch")
            continue
        candidates = mixed if strategy.runs_every_candidate else 1
        fits(per_pixel.training(batch * patch ** 2) * candidates,
             where + (f" through {candidates} op candidates" if candidates > 1 else ""), "lower the batch or the patch")
    if data.val_crop:
        fits(per_pixel.inference(data.val_crop ** 2), f"{recipe.source}: data.val_crop {data.val_crop}",
             "lower val_crop")
