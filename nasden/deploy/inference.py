"""Running a trained denoiser on whole images of any size: padding, overlapping tiles, per-tile routing.

Large images are cut into overlapping tiles, denoised a few tiles at a time (memory is bounded
by the tile size, not the image size) and blended back: each tile's weight is zero for the first
``overlap // 4`` pixels from an edge it shares with a neighbour and rises linearly over the next
``overlap // 2``, so seams vanish and, where the overlap exceeds four times the network's receptive
radius, the result equals the whole-image result. With a dynamic denoiser the gate can choose a
candidate per image or per tile (``route``). Neighbouring tiles of a row that use the same network are
computed as one box (their shared overlap once), and equal boxes of one network run as one batch.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nasden.common.progress import progress
from nasden.core.specs import is_dynamic
from nasden.data.image_sets import pad_to_multiple


@dataclass
class Denoised:
    """A denoised image, the FLOPs spent per pixel of it (overlap included) and, for a dynamic
    denoiser, the candidate each tile used (``choices``, with the tiles' ``boxes``)."""

    image: Tensor
    flops_per_pixel: float | None = None
    choices: list[int] = field(default_factory=list)
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def tile_layout(size: int, tile: int, overlap: int, multiple: int = 1) -> tuple[list[int], int]:
    """``(starts, length)``: the fewest tiles of at most ``tile`` pixels that cover ``size`` with at least
    ``overlap`` pixels shared by neighbours, all of one length and spread evenly, so no pixel is
    computed more often than needed. ``size``, ``tile`` and ``overlap`` are multiples of ``multiple``,
    and so are the starts and the length."""
    if size <= tile:
        return [0], size
    s, t, o = size // multiple, tile // multiple, overlap // multiple
    count = -(-(s - o) // (t - o))
    length = -(-(s + (count - 1) * o) // count)
    return [i * (s - length) // (count - 1) * multiple for i in range(count)], length * multiple


def _ramp(length: int, overlap: int, low_edge: bool, high_edge: bool) -> Tensor:
    margin, rise = overlap // 4, max(1, overlap // 2)
    position = torch.arange(length, dtype=torch.float32)
    weight = torch.ones(length)
    if low_edge:
        weight = torch.minimum(weight, ((position - margin + 1) / rise).clamp(0, 1))
    if high_edge:
        weight = torch.minimum(weight, ((length - position - margin) / rise).clamp(0, 1))
    return weight


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


Box = tuple[int, int, int, int]  # top, left, height, width


def merge_rows(boxes: list[Box], choices: list[int], limit: int) -> list[tuple[Box, int, int]]:
    """``(box, choice, tiles)``: neighbouring tiles of a row that chose the same candidate, merged into
    one box of at most ``limit`` tiles, so the overlap between them is computed once."""
    merged: list[tuple[Box, int, int]] = []
    for box, choice in zip(boxes, choices):
        if merged:
            (top, left, th, tw), previous, tiles = merged[-1]
            if box[0] == top and choice == previous and tiles < limit:
                merged[-1] = ((top, left, th, box[1] + box[3] - left), choice, tiles + 1)
                continue
        merged.append((box, choice, 1))
    return merged


@torch.no_grad()
def denoise(model: nn.Module, noisy: Tensor, multiple: int = 1, tile: int | None = None, overlap: int = 32,
            route: str = "image", batch: int = 4, quiet: bool = True) -> Denoised:
    """Denoise one ``[C, H, W]`` image: padded to a multiple of ``multiple`` (U-Nets) and cropped back,
    in ``tile``-pixel tiles when it is larger than that; ``route`` is ``image`` or ``tile`` for a
    :class:`~nasden.core.dynamic.DynamicDenoiser`. The gate picks first (per image, or per tile in batches of
    ``batch``); then each run of neighbouring tiles in a row that use the same network is computed as one box of at
    most ``batch`` tiles, so memory stays within ``batch`` tiles."""
    if route not in ("image", "tile"):
        raise ValueError(f"route must be 'image' or 'tile', got {route!r}")
    device = _device(model)
    padded, (h, w) = pad_to_multiple(noisy[None], multiple)
    height, width = padded.shape[-2:]
    dynamic = is_dynamic(model)
    if tile is None or (height <= tile and width <= tile):
        if dynamic and route == "tile":
            tile = max(height, width)
        else:
            return _whole(model, padded.to(device), h, w)
    tile = max(multiple, tile // multiple * multiple)
    overlap = min(overlap, tile // 2) // multiple * multiple
    (tops, th), (lefts, tw) = (tile_layout(side, tile, overlap, multiple) for side in (height, width))
    boxes = [(top, left, th, tw) for top in tops for left in lefts]
    choices, spent = [0] * len(boxes), 0.0  # spent: FLOPs of the gate and the candidates, overlap included
    if dynamic and route == "image":
        choices = [int(model.route(padded.to(device))[0])] * len(boxes)
        spent = model.gate_flops * height * width
    elif dynamic:
        choices = [int(c) for first in range(0, len(boxes), batch)
                   for c in model.route(_crops(padded, boxes[first: first + batch]).to(device))]
        spent = model.gate_flops * th * tw * len(boxes)
    out = torch.zeros_like(padded)
    weights = torch.zeros(1, 1, height, width)
    calls: dict[tuple[int, int, int, int], list[Box]] = {}  # equal boxes of one network run as one batch
    for box, choice, tiles in merge_rows(boxes, choices, batch):
        calls.setdefault((choice, tiles, *box[2:]), []).append(box)
    with progress(len(boxes), desc="tiles", quiet=quiet) as bar:
        for (choice, tiles, bh, bw), group in calls.items():
            network = model.candidates[choice] if dynamic else model
            step = max(1, batch // tiles)
            for first in range(0, len(group), step):
                part = group[first: first + step]
                results = network(_crops(padded, part).to(device)).cpu()
                for (top, left, _, _), result in zip(part, results):
                    weight = (_ramp(bh, overlap, top > 0, top + bh < height)[:, None]
                              * _ramp(bw, overlap, left > 0, left + bw < width)[None, :])
                    out[0, :, top: top + bh, left: left + bw] += result * weight
                    weights[0, 0, top: top + bh, left: left + bw] += weight
                if dynamic:
                    model.counts[choice] += tiles * len(part)
                    spent += model.flops[choice] * bh * bw * len(part)
                bar.update(tiles * len(part))
    image = (out / weights)[0, :, :h, :w]
    return Denoised(image, spent / (height * width) if dynamic else None, choices if dynamic else [], boxes)


def _crops(padded: Tensor, boxes: list[Box]) -> Tensor:
    return torch.cat([padded[..., t: t + th, lf: lf + tw] for t, lf, th, tw in boxes])


def _whole(model: nn.Module, padded: Tensor, h: int, w: int) -> Denoised:
    if is_dynamic(model):
        result, choice = model.route_and_run(padded)
        return Denoised(result[0, :, :h, :w].cpu(), model.flops[int(choice)] + model.gate_flops, choice.tolist(),
                        [(0, 0, padded.shape[-2], padded.shape[-1])])
    return Denoised(model(padded)[0, :, :h, :w].cpu())



@torch.no_grad()
def receptive_radius(model: nn.Module, channels: int, multiple: int = 1, probe: int = 97) -> int:
    """How far (pixels) an input pixel reaches in the output (at most ``probe // 2``). Measured on a copy whose
    weights are all positive (1 / fan-in; biases 0, BatchNorm the identity), in float64, so every path from
    the input to the output carries the impulse and none cancels: the pixels an impulse changes are exactly
    the receptive field. A dynamic denoiser's dearest candidate is probed."""
    network = copy.deepcopy(model.candidates[-1] if is_dynamic(model) else model).double().cpu()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_parameters()
        elif getattr(module, "weight", None) is not None and module.weight.dim() > 1:
            module.weight.fill_(1.0 / module.weight[0].numel())
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    side = -(-probe // multiple) * multiple
    base = torch.zeros(1, channels, side, side, dtype=torch.float64)
    impulse = base.clone()
    impulse[..., side // 2, side // 2] = 1.0
    rows, cols = torch.nonzero((network(impulse) - network(base)).abs().amax((0, 1)) > 0, as_tuple=True)
    if rows.numel() == 0:
        return 0
    return int(max((rows - side // 2).abs().max(), (cols - side // 2).abs().max()))


def route_map(result: Denoised, candidates: int) -> Tensor:
    """An RGB picture ``[3, H, W]`` of which candidate each tile used (dark: cheapest, bright: dearest)."""
    import matplotlib

    height, width = result.image.shape[-2:]
    index = torch.zeros(height, width)
    for (top, left, th, tw), choice in zip(result.boxes, result.choices):
        index[top: top + th, left: left + tw] = choice / max(1, candidates - 1)
    colours = matplotlib.colormaps["viridis"](index.numpy())[..., :3]
    return torch.from_numpy(colours).permute(2, 0, 1).float()
