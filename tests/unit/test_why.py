"""why(): shortest reference chains from module globals and frame locals."""

from __future__ import annotations

import pytest

import memtrim
from memtrim.analysis import referrers
from memtrim.analysis.referrers import Chain, Root
from memtrim.reporters import objects as report


@pytest.fixture(params=["native", "python"])
def engine(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(referrers, "_native", None)
    elif referrers._native is None:
        pytest.skip("native extension not built")
    return request.param


class User:
    pass


CACHE: dict = {}


class Registry:
    items: list = []


def test_module_global_chain(engine):
    target = User()
    CACHE["users"] = [None, None, None, target]
    try:
        chains = memtrim.why(target)
        assert str(chains) == f"{__name__}.CACHE -> dict['users'] -> list[3] -> <User object>"
        assert chains[0].root == Root("module", f"{__name__}.CACHE")
        assert chains[0].steps == [("dict", "['users']"), ("list", "[3]")]
    finally:
        CACHE.clear()


def test_class_attribute_chain(engine):
    target = User()
    Registry.items.append(target)
    try:
        chain = memtrim.why(target)[0]
        assert str(chain) == (
            f"{__name__}.Registry -> type.__dict__ -> dict['items'] -> list[0] -> <User object>"
        )
    finally:
        Registry.items.clear()


def test_frame_local_chain(engine):
    target = User()
    holder = {"k": target}
    chain = memtrim.why(target)[0]
    assert chain.root.kind == "frame"
    assert chain.root.name.endswith(" local holder")
    assert "test_frame_local_chain" in chain.root.name
    assert chain.steps == [("dict", "['k']")]
    del holder


def test_instance_attribute_chain(engine):
    owner, target = User(), User()
    owner.friend = target
    CACHE["owner"] = owner
    del owner  # otherwise the shortest chain is this frame's local
    try:
        assert (
            str(memtrim.why(target))
            == f"{__name__}.CACHE -> dict['owner'] -> User.friend -> <User object>"
        )
    finally:
        CACHE.clear()


def test_only_a_local_holds_it(engine):
    target = User()
    chains = memtrim.why(target)
    assert len(chains) == 1
    assert chains[0].root.name.endswith(" local target") and chains[0].steps == []


def test_several_chains(engine):
    target = User()
    CACHE["a"], CACHE["b"] = [target], (target,)
    try:
        texts = [str(c) for c in memtrim.why(target, chains=2)]
        assert sorted(texts) == sorted(
            [
                f"{__name__}.CACHE -> dict['a'] -> list[0] -> <User object>",
                f"{__name__}.CACHE -> dict['b'] -> tuple[0] -> <User object>",
            ]
        )
    finally:
        CACHE.clear()


def test_dot_export_and_text_rendering():
    chain = Chain(
        Root("module", "app.CACHE"), [("dict", "['users']"), ("list", "[3]")], "<User object>"
    )
    assert report.chain_text(chain) == "app.CACHE -> dict['users'] -> list[3] -> <User object>"
    dot = report.chains_dot([chain])
    assert dot.startswith("digraph why {")
    assert 'c0n2 -> c0n3 [label="[3]"]' in dot
    assert report.chains_text([]).startswith("no reference chain")


def test_bad_options():
    with pytest.raises(ValueError):
        memtrim.why(object(), chains=0)
    with pytest.raises(TypeError):
        memtrim.why(object(), chains="2")
