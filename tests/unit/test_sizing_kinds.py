"""What memtrim counts for generators, numpy object arrays, bound methods, and that
sizing never runs the program's code."""

from __future__ import annotations

import gc
import sys
import weakref
from unittest import mock

import pytest

import memtrim
from memtrim.objects import _kinds
from tests import oracles


@pytest.fixture(params=["native", "python"])
def engine(request, monkeypatch):
    """Run a test through the C walks and through their Python oracles."""
    if request.param == "python":
        oracles.use(monkeypatch, *oracles.SIZING, "census", "frame_values")
    return request.param


def a8(n: int) -> int:
    return (n + 7) & ~7


def referent_types(obj) -> list[str]:
    return [type(r).__name__ for r in gc.get_referents(obj)]


def _suspended(rows):
    total = 0
    for row in rows:
        total += len(row)
        yield total


def test_a_suspended_generator_counts_its_locals_and_stack(engine):
    rows = [[float(i)] * 3 for i in range(4)]  # built at run time
    gen = _suspended(rows)
    next(gen)
    before = referent_types(gen)
    size = memtrim.asizeof(gen)
    # the generator, the rows list (a local), each row and its one float; the
    # list iterator on the stack; `total` and `row` are among those already
    row_size = a8(sys.getsizeof(rows[0])) + 24
    iterator = a8(sys.getsizeof(iter(rows)))
    expected = a8(sys.getsizeof(gen)) + a8(sys.getsizeof(rows)) + 4 * row_size + iterator
    assert size == expected + 32  # + total, an int
    assert referent_types(gen) == before  # no frame object was created
    assert "frame" not in before


def _holding(big):
    local = [big]
    yield local
    yield None


def test_sizing_a_generator_leaves_it_unchanged(engine):
    big = "x" * 5000 + str(len(sys.argv))
    gen = _holding(big)
    next(gen)
    before = referent_types(gen)
    tree = memtrim.asized(gen, detail=2)
    memtrim.census()
    memtrim.retained(gen)
    assert referent_types(gen) == before
    assert [ref.name for ref in tree.refs] == ["f_code", "local big", "local local"]
    assert tree.get("local big").size == a8(sys.getsizeof(big))
    assert tree.size == memtrim.asizeof(gen)


def test_finished_and_unstarted_generators(engine):
    rows = [1.5] * 10
    gen = _holding(rows)  # not started: its argument is a local already
    assert memtrim.asizeof(gen) == a8(sys.getsizeof(gen)) + a8(sys.getsizeof(rows)) + 24
    list(gen)
    assert memtrim.asizeof(gen) == a8(sys.getsizeof(gen))


async def _coroutine(items):
    return len(items)


def test_coroutines_count_their_arguments(engine):
    items = [2.5] * 3
    coro = _coroutine(items)
    try:
        assert memtrim.asizeof(coro) == a8(sys.getsizeof(coro)) + a8(sys.getsizeof(items)) + 24
    finally:
        coro.close()


class Marker:
    pass


def test_why_names_the_generator_local(engine, monkeypatch):
    if engine == "python":
        oracles.use(monkeypatch, "path")
    box = [Marker()]
    target = weakref.ref(box[0])
    gen = _holding(box)
    next(gen)
    HOLDER["gen"] = gen
    del box, gen
    try:
        chain = memtrim.why(target())[0]
        assert str(chain) == (
            f"{__name__}.HOLDER -> dict['gen'] -> generator local big -> list[0] -> <Marker object>"
        )
    finally:
        HOLDER.clear()


HOLDER: dict = {}


class Counting:
    calls = 0

    def __init__(self) -> None:
        self.payload = [1.5]

    def __sizeof__(self) -> int:
        Counting.calls += 1
        return 10_000


class CountingList(list):
    calls = 0

    def __sizeof__(self) -> int:
        CountingList.calls += 1
        return 10


def test_a_python_sizeof_is_never_called(engine):
    Counting.calls = CountingList.calls = 0
    obj, items = Counting(), CountingList([1.5, 2.5])
    plain = Counting.__mro__[1]  # object
    size = memtrim.asizeof(obj)
    assert memtrim.flatsize(obj) == plain.__sizeof__(obj) + 16 + 16  # GC head, managed pointers
    assert memtrim.flatsize(items) == list.__sizeof__(items) + 16 + 16
    memtrim.asized([obj, items], detail=3).format()
    memtrim.census()
    memtrim.retained(obj)
    assert size > 0
    assert (Counting.calls, CountingList.calls) == (0, 0)
    row = memtrim.census().get(CountingList)
    assert row is not None and row.bytes >= list.__sizeof__(items) + 32


def test_a_magic_mock_is_sized_and_unchanged(engine):
    m = mock.MagicMock()
    m.foo.bar = 1
    calls = list(m.mock_calls)
    children = dict(m._mock_children)
    size = memtrim.asizeof(m)
    assert size == memtrim.asizeof(m)  # nothing grew
    memtrim.asized(m, detail=3).format()
    memtrim.census()
    memtrim.retained(m)
    memtrim.flatsize(m)
    assert list(m.mock_calls) == calls
    assert dict(m._mock_children) == children
    assert 0 < size < 1_000_000


def test_bound_method_with_code_matches_pympler(engine):
    asizeof = pytest.importorskip("pympler.asizeof")

    class K:
        def meth(self):
            return 1

    method = K().meth
    assert memtrim.asizeof(method, code=True) == asizeof.asizeof(method, code=True)
    assert memtrim.asizeof(method) == 0


def test_numpy_object_array_counts_its_objects_once(engine):
    np = pytest.importorskip("numpy")
    word = "x" * 1000 + str(len(sys.argv))
    other = "y" * 500 + str(len(sys.argv))
    arr = np.array([word, word, other], dtype=object)
    assert memtrim.asizeof(arr) == a8(sys.getsizeof(arr)) + a8(sys.getsizeof(word)) + a8(
        sys.getsizeof(other)
    )
    view = arr[::2]  # the base holds the objects
    assert memtrim.asizeof(view) == a8(sys.getsizeof(view))
    numbers = np.arange(10.0)
    assert memtrim.asizeof(numbers) == a8(sys.getsizeof(numbers))


def _reference_name(obj, clip: int) -> str:
    """Pympler's name for an object: its whole repr, clipped in the middle."""
    text = repr(obj).replace("\n", "\\n")
    if len(text) > clip > 0 and clip // 2 - 2 > 0:
        half = clip // 2 - 2
        text = text[:half] + "...." + text[-half:]
    return text


def _random_data(rnd, depth=0):
    atoms = [1, -5, 10**30, 2.5, "s", "it's", 'q"x', "a\nb", None, True, b"b", 3j, "é" * 40]
    if depth > 3 or rnd.random() < 0.3:
        return rnd.choice(atoms)
    n = rnd.choice([0, 1, 2, 17, 40])
    kind = rnd.choice([list, tuple, dict, set, frozenset])
    if kind is dict:
        return {str(i) * 3: _random_data(rnd, depth + 1) for i in range(n)}
    if kind in (set, frozenset):
        return kind(str(i) * 3 for i in range(n))
    return kind(_random_data(rnd, depth + 1) for _ in range(n))


def test_names_of_big_containers_are_their_clipped_repr():
    import random

    rnd = random.Random(4)
    for _ in range(300):
        obj = _random_data(rnd)
        for clip in (80, 9, 0):
            assert _kinds.safe_repr(obj, clip) == _reference_name(obj, clip)
    cycle: list = list(range(30))
    cycle.append(cycle)
    assert _kinds.safe_repr(cycle, 80) == _reference_name(cycle, 80)
    huge = [{"k": i} for i in range(200_000)]
    assert _kinds.safe_repr(huge, 80) == _reference_name(huge, 80)


def test_sizing_keeps_no_class_alive(engine):
    cls = type("Temporary", (), {"__init__": lambda self: setattr(self, "x", [1.5])})
    memtrim.asizeof([cls(), cls()], code=True)
    memtrim.asized(cls(), detail=2)
    ref = weakref.ref(cls)
    del cls
    gc.collect()
    assert ref() is None
