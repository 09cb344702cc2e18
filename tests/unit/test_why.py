"""why(): shortest reference chains from module globals, class attributes, frames, threads."""

from __future__ import annotations

import gc
import threading

import pytest

import memtrim
from memtrim.objects.referrers import Chain, Root
from memtrim.objects.render import text as report
from tests import oracles


@pytest.fixture(params=["native", "python"])
def engine(request, monkeypatch):
    """Run a test through the C search and through its Python oracle."""
    if request.param == "python":
        oracles.use(monkeypatch, "path")
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
        assert str(chain) == f"{__name__}.Registry.items -> list[0] -> <User object>"
        assert chain.root == Root("class", f"{__name__}.Registry.items")
    finally:
        Registry.items.clear()


class Outer:
    class Inner:
        slots: dict = {}


def test_nested_class_attribute_chain(engine):
    target = User()
    Outer.Inner.slots["x"] = target
    try:
        assert str(memtrim.why(target)) == (
            f"{__name__}.Outer.Inner.slots -> dict['x'] -> <User object>"
        )
    finally:
        Outer.Inner.slots.clear()


def test_materialized_instance_dict_reads_as_an_attribute(engine):
    owner, target = User(), User()
    owner.__dict__["friend"] = target  # a real dict: instance -> dict -> value
    CACHE["owner"] = owner
    del owner
    try:
        assert (
            str(memtrim.why(target))
            == f"{__name__}.CACHE -> dict['owner'] -> User.friend -> <User object>"
        )
    finally:
        CACHE.clear()


def _hold(box: list, event: threading.Event) -> None:
    del box  # only the thread's args hold it now
    event.wait()


def test_thread_args_are_roots(engine):
    target, event = User(), threading.Event()
    thread = threading.Thread(target=_hold, args=([target], event), name="holder")
    thread.start()
    try:
        chain = memtrim.why(target)[0]
        assert str(chain) == "thread 'holder'._args -> tuple[0] -> list[0] -> <User object>"
        assert chain.root.kind == "thread"
    finally:
        event.set()
        thread.join()
        del thread


def _wait_with(items: list, event: threading.Event) -> None:
    event.wait()


def test_thread_frame_locals_are_named_by_thread(engine):
    target, event = User(), threading.Event()
    thread = threading.Thread(target=_wait_with, args=([target], event), name="waiter")
    thread.start()
    try:
        chain = memtrim.why(target)[0]
        assert chain.root.kind == "frame"
        assert chain.root.name.startswith("waiter: _wait_with (")
        assert chain.root.name.endswith(" local items")
        assert chain.steps == [("list", "[0]")]
    finally:
        event.set()
        thread.join()


def test_gc_garbage_is_a_root(engine):
    target = User()
    box = [target]
    gc.garbage.append(box)
    del box
    try:
        assert str(memtrim.why(target)) == "gc.garbage -> list[0] -> list[0] -> <User object>"
    finally:
        gc.garbage.clear()


HELD = None


def test_a_module_global_that_is_the_target_comes_after_other_chains(engine):
    global HELD
    target = User()
    HELD = target
    try:
        assert str(memtrim.why(target)) == f"{__name__}.HELD -> <User object>"
        CACHE["x"] = [target]
        texts = [str(c) for c in memtrim.why(target, chains=3)]
        assert texts[0] == f"{__name__}.CACHE -> dict['x'] -> list[0] -> <User object>"
        assert texts[1] == f"{__name__}.HELD -> <User object>"
        assert texts[2].endswith(" local target -> <User object>")  # the caller's own name
        assert "test_a_module_global_that_is_the_target" in texts[2]
    finally:
        HELD = None
        CACHE.clear()


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


def test_several_chains_shortest_first(engine):
    target = User()
    CACHE["deep"] = {"x": [target]}
    CACHE["flat"] = [target]
    try:
        chains = memtrim.why(target, chains=5)
        assert [str(c) for c in chains[:2]] == [
            f"{__name__}.CACHE -> dict['flat'] -> list[0] -> <User object>",
            f"{__name__}.CACHE -> dict['deep'] -> dict['x'] -> list[0] -> <User object>",
        ]
        lengths = [len(c.steps) for c in chains]
        assert lengths[:2] == sorted(lengths[:2])
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


def test_memtrims_own_modules_are_no_roots(engine):
    from memtrim.objects import _kinds

    for target in (None, type, int, User):
        for chain in memtrim.why(target, chains=5):
            assert not chain.root.name.startswith("memtrim"), str(chain)
    # only memtrim's own module holds it: no chain, only this frame's names for it
    chains = list(memtrim.why(_kinds.STATIC, chains=5))
    assert [str(c) for c in chains if c.steps or c.root.kind != "frame"] == []
