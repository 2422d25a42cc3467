"""Routing gates: small networks that pick a candidate sub-network for each input image
(DDS-Net's gate, ClassPruning's difficulty classifier).

Every gate maps a batch ``[N, C, H, W]`` to logits ``[N, E]`` over E candidates, reports its own
``flops_per_pixel`` and keeps ``spec``, the JSON dict that rebuilds it (:func:`gate_from_spec`);
:class:`nasden.core.dynamic.DynamicDenoiser` runs the chosen candidates. Gates are registered by kind
(``@register_gate("name")`` on a builder ``(supernet, candidates, **options) -> gate``); third-party
packages use the entry-point group ``nasden.gates``.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nasden.common.registry import GATES, OPS, UnknownNameError, register_gate
from nasden.core.ops.attention import DynamicTanhAttention
from nasden.core.ops.base import Layout
from nasden.core.supernet import Supernet


class DDSGate(nn.Module):
    """DDS-Net's gate (Eq. 8-10): the first conv block at a fixed width, squeeze U, the reduced
    feature R = ReLU(W1 U), then the prediction head W3 (1×1 conv), BN, ReLU, W4 (1×1 conv to E).

    W1 comes from the supernet's attention head when it has one and stays frozen with the stem
    (the paper disables the attention head during gate training); otherwise W1 is learned here.
    """

    def __init__(self, stem: nn.Module, stem_flops: float, reduce: nn.Linear, hidden: int, candidates: int,
                 learn_reduce: bool, width: int, block: list[str]):
        super().__init__()
        self.stem, self.reduce, self.flops_per_pixel = stem, reduce, stem_flops
        self.block, self.width = block, width  # the supernet nodes the stem computes, at this width
        self.spec = {"kind": "dds", "candidates": candidates, "width": width, "hidden": hidden}
        self.head = nn.Sequential(nn.Conv2d(reduce.out_features, hidden, 1), nn.BatchNorm2d(hidden), nn.ReLU(),
                                  nn.Conv2d(hidden, candidates, 1))
        for module in (stem,) if learn_reduce else (stem, reduce):
            module.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.stem(x))

    def classify(self, features: Tensor) -> Tensor:
        """The logits from the stem's output (which a dynamic denoiser reuses as its first block's). The head's
        1×1 convs see a 1×1 map: they run as the matrix products they are (a conv call costs far more)."""
        reduced = F.relu(self.reduce(spatial_mean(features)))
        first, norm, relu, last = self.head
        hidden = relu(norm(F.linear(reduced, first.weight.flatten(1), first.bias)[:, :, None, None])).flatten(1)
        return F.linear(hidden, last.weight.flatten(1), last.bias)


def spatial_mean(x: Tensor) -> Tensor:
    """``x.mean((2, 3))``; for a channels-last ``x`` as a matrix product over its rows of channels, which reads
    the memory once (PyTorch's reduction over the outer dimensions of NHWC is about 3× slower on CPU)."""
    n, c, h, w = x.shape
    if c == 1 or not x.is_contiguous(memory_format=torch.channels_last):
        return x.mean((2, 3))
    rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
    return torch.matmul(x.new_full((1, h * w), 1 / (h * w)), rows).squeeze(1)


def first_block(supernet: Supernet) -> tuple[list[str], str | None]:
    """The nodes of the first conv block (a conv and the ReLU/BN after it), and the attention node after it."""
    space = supernet.space
    successors = {name: [n for n in space.nodes.values() if name in n.preds] for name in space.nodes}
    nodes = [successors[space.input_node.name][0].name]
    while True:
        after = successors[nodes[-1]]
        if len(after) != 1 or after[0].kind != "layer" or not after[0].preserves_channels:
            return nodes, None
        if after[0].ops == ("attention",):
            return nodes, after[0].name
        nodes.append(after[0].name)


@register_gate("dds")
@torch.no_grad()
def dds_gate(supernet: Supernet, candidates: int, width: int | str = "smallest", hidden: int = 32) -> DDSGate:
    """DDS-Net's gate on ``supernet``'s first block at ``width`` (a number, 'smallest' or 'largest')."""
    space = supernet.space
    nodes, attention = first_block(supernet)
    conv = space.nodes[nodes[0]]
    if conv.kind != "layer" or conv.preserves_channels or len(conv.ops) > 1:
        raise ValueError(f"the DDS gate needs a fixed conv after the input; {conv.name!r} is not one")
    if isinstance(width, str):
        options = conv.widths or (conv.channels,)
        width = min(options) if width == "smallest" else max(options)
    if not 1 <= width <= conv.channels:
        raise ValueError(f"gate width {width} is outside 1..{conv.channels} channels of {conv.name!r}")
    layers = [supernet.layers[conv.name].candidates[conv.ops[0]].extract(Layout.dense(conv.in_channels), width)]
    for name in nodes[1:]:
        op = space.nodes[name].ops[0]
        layers.append(supernet.layers[name].candidates[op].extract(Layout.dense(width), width))
    stem_flops = 2 * OPS.get(conv.ops[0]).cost(conv.in_channels, width)[0] / 4.0 ** conv.scale
    if attention is not None:
        head: DynamicTanhAttention = supernet.layers[attention].candidates["attention"]
        reduce = nn.Linear(width, head.w1.shape[0])
        reduce.weight.copy_(head.w1[:, :width])
        reduce.bias.copy_(head.b1)
    else:
        reduce = nn.Linear(width, max(4, width // 4))
    stem = nn.Sequential(*layers).eval().to(memory_format=torch.channels_last)  # as the supernet's convs run
    gate = DDSGate(stem, stem_flops, reduce, hidden, candidates, attention is None, width,
                   nodes)
    return gate.to(next(supernet.parameters()).device)


class ClassifierGate(nn.Module):
    """ClassPruning's classifier module: four Conv-BN-ReLU blocks, global average pooling and a fully
    connected layer to L difficulty classes (class i routes to the i-th cheapest branch); a ``gate``
    stage with ``gate: classifier`` uses it with one output per candidate.

    The paper gives neither width nor stride; each block here has ``channels`` outputs and stride
    ``stride``, so with the defaults (64, 2) the classifier costs about 0.5% of a 17-layer DnCNN.
    """

    def __init__(self, in_channels: int, classes: int, channels: int = 64, stride: int = 2):
        super().__init__()
        blocks: list[nn.Module] = []
        macs, cin = 0.0, in_channels
        for block in range(1, 5):
            blocks += [nn.Conv2d(cin, channels, 3, stride, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
            macs += 9 * cin * channels / stride ** (2 * block)
            cin = channels
        self.features = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, classes)
        self.flops_per_pixel = 2 * macs
        self.spec = {"kind": "classifier", "candidates": classes, "channels": channels, "stride": stride}

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@register_gate("classifier")
def classifier_gate(supernet: Supernet, candidates: int, channels: int = 64, stride: int = 2) -> ClassifierGate:
    """ClassPruning's classifier with one class per candidate, for ``supernet``'s images."""
    return ClassifierGate(supernet.space.in_channels, candidates, channels, stride).to(
        next(supernet.parameters()).device)


def check_gate_options(kind: str, options: dict[str, Any]) -> None:
    """Raise ``ValueError("gate: ...")`` unless ``kind`` is a registered gate whose builder takes ``options``."""
    try:
        builder = GATES.get(kind)
    except UnknownNameError as err:
        raise ValueError(f"gate: {err}") from None
    parameters = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(options) - set(parameters) - {"supernet", "candidates"})
    if unknown and not takes_any:
        raise ValueError(f"gate_options: gate {kind!r} takes no option {unknown[0]!r}; it takes "
                         f"{', '.join(name for name in parameters if name not in ('supernet', 'candidates'))}")


def build_gate(supernet: Supernet, kind: str, candidates: int, **options: Any) -> nn.Module:
    """A registered gate of ``kind`` over ``candidates`` (its ``spec`` rebuilds it)."""
    try:
        return GATES.get(kind)(supernet, candidates, **options)
    except TypeError as err:
        raise ValueError(f"gate {kind!r}: {err}") from None


def gate_from_spec(supernet: Supernet, spec: dict[str, Any]) -> nn.Module:
    """The (untrained) gate a spec describes, ready for ``load_state_dict``."""
    spec = dict(spec)
    if "classes" in spec:  # a classifier spec of final.pt format 1
        spec["candidates"] = spec.pop("classes")
    return build_gate(supernet, **spec)
