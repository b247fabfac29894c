"""FedNode.set_keys on random small trees: a federation's new K moves every descendant
leaf's K by exactly (new - old), and leaves outside that subtree do not move.

The nodes are real FedNodes built as the hierarchy builds them (``Shared``, a ``Strategy``
per node, resolved ``Settings``), over a two-tensor model: one backbone tensor B and one
key-layer tensor K. A federation's K is what ``own_keys`` returns (for a federation of
federations the weighted mean it keeps; for a leaf federation its server's K).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from fedgroups.fl.config import ServerConfig, parse_config  # noqa: E402
from fedgroups.fl.hierarchy.config import Settings  # noqa: E402
from fedgroups.fl.hierarchy.node import FedNode, Shared  # noqa: E402
from fedgroups.fl.strategy import Strategy  # noqa: E402

KEY = "key.weight"  # K
BACKBONE = "body.weight"  # B
SHAPE = (2, 3)

# A tree shape: a leaf federation is None; a federation is the list of its children.
Shape = Any
shapes = st.recursive(st.none(), lambda kids: st.lists(kids, min_size=1, max_size=3),
                      max_leaves=6)


class TwoTensors(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(SHAPE[1], SHAPE[0], bias=False)
        self.key = torch.nn.Linear(SHAPE[1], SHAPE[0], bias=False)


def shared_run() -> Shared:
    config = parse_config({"data": {"path": "unused"}, "output_dir": "unused", "seed": 0,
                           "rounds": 1, "cohort_size": 2})
    return Shared(model=TwoTensors(), tokenizer=None, eos_id=0, config=config,
                  backbone=[BACKBONE], key_names=[KEY], method="worldlm", mode="attention",
                  residuals=0)


def make_tree(shape: Shape, shared: Shared, init: dict[str, torch.Tensor],
              path: str = "world", level: int = 0) -> FedNode:
    children = [] if shape is None else [
        make_tree(sub, shared, init, f"{path}/n{i}", level + 1) for i, sub in enumerate(shape)]
    node_settings = Settings(rounds=1, cohort_size=2, server=ServerConfig(), weighting="tokens",
                             tau=0.1, privacy=None)
    return FedNode(path=path, level=level, settings=node_settings, shared=shared,
                   strategy=Strategy(), children=children,
                   clients=() if children else (("unused", "doc"),), init=init,
                   total_rounds=1, is_root=level == 0)


def walk(node: FedNode) -> list[FedNode]:
    return [node] + [d for c in node.children for d in walk(c)]


def leaves(node: FedNode) -> list[FedNode]:
    return [n for n in walk(node) if n.is_leaf]


def leaf_key(leaf: FedNode) -> torch.Tensor:
    return leaf.own_keys()[KEY].detach().clone()


@settings(max_examples=40)
@given(shape=st.lists(shapes, min_size=1, max_size=3), data=st.data())
def test_set_keys_moves_every_descendant_leaf_by_the_change(shape: list[Shape],
                                                            data: st.DataObject) -> None:
    shared = shared_run()
    init = {n: p.detach().clone() for n, p in shared.model.named_parameters()}
    root = make_tree(shape, shared, init)
    # every leaf starts from its own K, so a shift cannot hide behind equal values
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1), label="seed"))
    for leaf in leaves(root):
        leaf.set_keys({KEY: torch.randn(SHAPE, generator=gen)})
    federations = [n for n in walk(root) if not n.is_leaf]
    node = data.draw(st.sampled_from(federations), label="federation")
    old = node.own_keys()[KEY].detach().clone()
    new = old + torch.randn(SHAPE, generator=gen) * data.draw(
        st.floats(0.01, 100.0), label="scale")
    inside = {id(n) for n in leaves(node)}
    before = {id(n): leaf_key(n) for n in leaves(root)}

    node.set_keys({KEY: new})

    assert torch.allclose(node.own_keys()[KEY], new)
    for leaf in leaves(root):
        moved = leaf_key(leaf) - before[id(leaf)]
        want = new - old if id(leaf) in inside else torch.zeros(SHAPE)
        assert torch.allclose(moved, want, rtol=1e-5, atol=1e-4), (leaf.path, moved, want)
