"""retained(): the bytes only an object keeps alive, from reference counts."""

from __future__ import annotations

import collections
import sys
import weakref

import pytest

import memtrim
from memtrim.objects import _retained, sizing
from tests import oracles


@pytest.fixture(params=["native", "python"])
def engine(request, monkeypatch):
    """Run a test through the C walks and through their Python oracles."""
    if request.param == "python":
        oracles.use(monkeypatch, *oracles.SIZING)
    return request.param


def a8(n: int) -> int:
    return (n + 7) & ~7


def test_a_shared_child_is_not_retained(engine):
    shared = [float("1.25")]  # built at run time: not a constant held by the code
    owner = {"mine": [float("2.25")], "shared": shared}
    mine = owner["mine"]
    expected = a8(sys.getsizeof(owner)) + a8(sys.getsizeof(mine)) + 24
    del mine
    result = memtrim.retained(owner)
    assert result.reachable == memtrim.asizeof(owner)
    assert (result.retained, result.objects) == (expected, 3)


def test_a_local_of_any_frame_holds(engine):
    def holding():
        big = ["y" * 5000 + str(len(sys.argv))]
        holder = {"big": big}
        return memtrim.retained(holder), a8(sys.getsizeof(holder))

    result, holder_size = holding()
    assert (result.retained, result.objects) == (holder_size, 1)


def test_constants_and_immortals_are_not_retained(engine):
    owner = ["a constant string, held by the code object", None, 12]
    result = memtrim.retained(owner)
    assert (result.retained, result.objects) == (a8(sys.getsizeof(owner)), 1)


class Node:
    def __init__(self) -> None:
        self.other = None


def test_a_cycle_only_the_object_reaches_is_retained(engine):
    a, b = Node(), Node()
    a.other, b.other = b, a
    del b
    result = memtrim.retained(a)
    assert result.objects == 2
    # everything but the attribute name, which the class's code holds
    assert result.retained == result.reachable - a8(sys.getsizeof("other"))


def test_what_a_weakref_points_to_is_still_retained(engine):
    items = [Node()]
    ref = weakref.ref(items[0])
    result = memtrim.retained(items)
    assert result.objects == 2
    assert ref() is items[0]


def _holding(rows):
    yield len(rows)


def test_objects_only_a_generator_owns_are_retained(engine):
    rows = [[float(i)] for i in range(100)]
    gen = _holding(rows)
    del rows
    next(gen)
    gen.gi_frame.f_locals  # noqa: B018 - a frame object (and on 3.11/3.12 a dict) the generator owns
    result = memtrim.retained(gen)
    assert result.objects == 1 + 1 + 100 + 100  # generator, rows, each row, each float
    assert result.retained == result.reachable


def test_a_held_container_holds_what_it_refers_to(engine):
    inner = [float("3.5")]
    outer = [inner]
    HOLD.append(inner)
    try:
        result = memtrim.retained(outer)
        assert (result.retained, result.objects) == (a8(sys.getsizeof(outer)), 1)
    finally:
        HOLD.clear()


HOLD: list = []


def zoo() -> list[object]:
    shared = [0.5]
    deque = collections.deque([Node(), "q" * 100 + str(len(sys.argv))])
    materialized = Node()
    materialized.__dict__  # noqa: B018
    return [
        {"a": [1.5, shared], "b": shared},
        [Node() for _ in range(5)],
        materialized,
        deque,
        (shared, [shared]),
        {str(i) + "k": [float(i)] for i in range(20)},
    ]


@pytest.mark.parametrize("opts", [{}, {"footprint": True}, {"limit": 1}, {"code": True}], ids=repr)
def test_native_and_python_agree(opts):
    options = sizing.Options.parse(opts)
    for obj in zoo():
        native = _retained.retained(obj, options)
        with oracles.python("retained"):
            python = _retained.retained(obj, options)
        assert native == python, (type(obj).__name__, opts)
