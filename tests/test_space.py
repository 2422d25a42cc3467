from __future__ import annotations

import hashlib
import json
import random

import networkx as nx
import pytest

from nasden.common.registry import SPACES, UnknownNameError
from nasden.core.space import SearchSpace, SpaceError, arch_from_json, arch_hash, arch_to_json, width_choices


def chain(*layers: tuple[str, dict], residual: bool = False, channels: int = 1) -> nx.DiGraph:
    g = nx.DiGraph(residual=residual)
    g.add_node("input", op="input", channels=channels)
    last = "input"
    for name, attrs in layers:
        g.add_node(name, **attrs)
        g.add_edge(last, name)
        last = name
    g.add_node("output", op="output")
    g.add_edge(last, "output")
    return g


def test_choices_of_toy_space() -> None:
    space = SPACES.get("toy")()
    choices = space.choices()
    assert {c.kind for c in choices.values()} == {"op", "width", "input", "nm"}
    assert choices["width:outer"].nodes == ("stem", "up")  # shared across the residual add
    assert choices["width:outer"].values == (4, 8)
    assert choices["nm:branch"].nodes == ("mid", "tail")
    assert choices["input:mid"].values == ("stem_relu", "skip")  # topological order
    assert space.largest()["width:outer"] == 8 and space.smallest()["width:outer"] == 4
    assert space.largest()["nm:branch"] == "4:4" and space.smallest()["nm:branch"] == "1:4"


def test_sample_is_seeded_and_valid() -> None:
    space = SPACES.get("toy")()
    assert space.sample(3) == space.sample(random.Random(3))
    archs = [space.sample(i) for i in range(30)]
    for arch in archs:
        space.check(arch)
    assert len({arch_hash(a) for a in archs}) > 20


def test_arch_json_round_trip_and_stable_hash() -> None:
    space = SPACES.get("toy")()
    arch = space.sample(1)
    assert arch_from_json(arch_to_json(arch)) == arch
    assert arch_hash(dict(reversed(list(arch.items())))) == arch_hash(arch)
    assert arch_hash({"a": 1}) == hashlib.sha1(b'{"a": 1}').hexdigest()[:12]  # no per-process salt
    json.dumps(space.largest())


def test_check_rejects_bad_architectures() -> None:
    space = SPACES.get("toy")()
    arch = space.largest()
    with pytest.raises(ValueError, match="missing labels"):
        space.check({k: v for k, v in arch.items() if k != "op:stem"})
    with pytest.raises(ValueError, match="not one of"):
        space.check({**arch, "width:outer": 5})


@pytest.mark.parametrize("graph, message", [
    (chain(("a", {"op": "conv3x3", "channels": 8}), ("b", {"op": "conv3x3", "channels": 1, "widths": [16]})),
     "node 'b': width choice 16 is larger than its 1 channels"),
    (chain(("a", {"op": "conv9x9", "channels": 1})), "node 'a': unknown op 'conv9x9'"),
    (chain(("a", {"op": "conv3x3", "channels": 0})), "node 'a': channels must be a positive integer"),
    (chain(("a", {"op": "conv3x3", "channels": 8}), ("b", {"op": "relu", "channels": 4})), "node 'b'"),
    (chain(("a", {"op": "conv3x3_s2", "channels": 1})), "output node 'output': input 'a' is at 1/2 resolution"),
    (chain(("a", {"op": "conv3x3", "channels": 1})).__class__(), "expected exactly one 'input' node"),
    (chain(("a", {"op": "conv3x3", "channels": 2})), "must have a fixed 1 or 3 channels"),
    (chain(("a", {"op": "conv3x3", "channels": 6}), ("b", {"op": "pixelshuffle_conv3x3", "channels": 1})),
     "multiple of 4"),
    (chain(("a", {"op": "conv3x3", "channels": 1, "nm": ["5:4"]})), "needs 0 < N <= M"),
    (chain(("a", {"op": "convT3x3_s2", "channels": 4, "nm": ["2:4"]}), ("b", {"op": "conv3x3_s2", "channels": 1})),
     "do not support N:M"),
])
def test_validation_names_the_culprit(graph: nx.DiGraph, message: str) -> None:
    with pytest.raises(SpaceError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        SearchSpace(graph)
    assert "\n" not in str(err.value)


def test_validation_finds_cycles_unreachable_nodes_and_merge_mismatches() -> None:
    g = chain(("a", {"op": "conv3x3", "channels": 4}), ("b", {"op": "conv3x3", "channels": 1}))
    cyclic = g.copy()
    cyclic.add_edge("b", "a")
    with pytest.raises(SpaceError, match="cycle: "):
        SearchSpace(cyclic)
    dangling = g.copy()
    dangling.add_node("orphan", op="relu")
    with pytest.raises(SpaceError, match="node 'orphan': no path from the input"):
        SearchSpace(dangling)
    dead_end = g.copy()
    dead_end.add_node("dead", op="relu")
    dead_end.add_edge("a", "dead")
    with pytest.raises(SpaceError, match="node 'dead': no path to the output"):
        SearchSpace(dead_end)
    mismatch = chain(("a", {"op": "conv3x3", "channels": 4}), ("b", {"op": "conv3x3_s2", "channels": 4}),
                     ("m", {"op": "add"}), ("c", {"op": "convT3x3_s2", "channels": 1}))
    mismatch.add_edge("a", "m")
    with pytest.raises(SpaceError, match="add node 'm': input 'b' is at 1/2 resolution but 'a' is at 1/1"):
        SearchSpace(mismatch)
    channels = chain(("a", {"op": "conv3x3", "channels": 4}), ("b", {"op": "conv3x3", "channels": 8}),
                     ("m", {"op": "add"}), ("c", {"op": "conv3x3", "channels": 1}))
    channels.add_edge("a", "m")
    with pytest.raises(SpaceError, match="add node 'm': input 'b' has 8 channels but 'a' has 4"):
        SearchSpace(channels)


def test_residual_add_must_share_width_label() -> None:
    g = chain(("a", {"op": "conv3x3", "channels": 8, "widths": [4, 8]}),
              ("b", {"op": "conv3x3", "channels": 8, "widths": [4, 8]}), ("m", {"op": "add"}),
              ("c", {"op": "conv3x3", "channels": 1}))
    g.add_edge("a", "m")
    with pytest.raises(SpaceError, match="add node 'm': its inputs must share one width label"):
        SearchSpace(g)
    g.nodes["b"]["label"] = g.nodes["a"]["label"] = "res"
    assert SearchSpace(g).choices()["width:res"].nodes == ("a", "b")


def test_yaml_style_dict_round_trip() -> None:
    space = SPACES.get("toy")()
    again = SearchSpace.from_dict(space.to_dict())
    assert again.choices() == space.choices()
    with pytest.raises(SpaceError, match="node 'nope' is not declared"):
        SearchSpace.from_dict({"nodes": {"input": {"op": "input", "channels": 1}}, "edges": [["input", "nope"]]})
    built = SPACES.get("graph")(**space.to_dict())
    assert built.residual and len(built.nodes) == len(space.nodes)


def test_width_choices() -> None:
    assert width_choices(64, 16, 0.25) == [16, 32, 48, 64]
    assert width_choices(64, 8, 0.2) == [16, 24, 32, 40, 48, 56, 64]
    with pytest.raises(SpaceError):
        width_choices(60, 8)


def test_unknown_space_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match="known: .*dncnn.*toy"):
        SPACES.get("nope")
