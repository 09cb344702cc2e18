"""Deep sizing: Pympler-compatible numbers, memtrim's corrections, bad input."""

from __future__ import annotations

import array
import collections
import dataclasses
import gc
import sys
import types
import weakref

import pytest

import memtrim
from memtrim.objects import _layout, sizing
from tests import oracles


def a8(n: int) -> int:
    return (n + 7) & ~7


@pytest.fixture(params=["native", "python"])
def engine(request, monkeypatch):
    """Run a test through the C walks and through their Python oracles."""
    if request.param == "python":
        oracles.use(monkeypatch, *oracles.SIZING, "census", "path")
    return request.param


@dataclasses.dataclass
class Point:
    x: int = 1
    y: str = "why"
    z: tuple = (1.5, 2.5)


Pair = collections.namedtuple("Pair", "left right")


class Slotted:
    __slots__ = ("__private", "a", "b")

    def __init__(self) -> None:
        self.a = 12345
        self.b = [1, 2, 3]
        self.__private = "secret"


class Plain:
    def __init__(self) -> None:
        self.name = "plain"
        self.values = [1.0, 2.0]


def ordinary() -> dict[str, object]:
    """Fresh ordinary objects (a function, so every test gets new ones)."""
    return {
        "int": 12345678,
        "bigint": 10**100,
        "float": 3.25,
        "str": "hello world",
        "unicode": "h\u00e9llo \u1234",
        "bytes": b"x" * 100,
        "list": [1, 2, [3, 4], "string"],
        "tuple": (1, "a", (2, 3.5)),
        "dict": {"a": 1, "b": [1, 2], 3: (4, 5)},
        "bigdict": {i: str(i) for i in range(50)},
        "set": {1, 2, 3, "x"},
        "frozenset": frozenset(range(20)),
        "dataclass": Point(),
        "namedtuple": Pair(1, "two"),
        "slots": Slotted(),
        "ordereddict": collections.OrderedDict(a=1, b=[2]),
        "defaultdict": collections.defaultdict(list, {"k": [1]}),
        "counter": collections.Counter("mississippi"),
        "userdict": collections.UserDict(a=1),
        "nested": [[[[1.5]]]],
        "shared": [[7.5]] * 3,
    }


@pytest.mark.parametrize("key", sorted(ordinary()))
def test_ordinary_objects_match_pympler(key, engine):
    asizeof = pytest.importorskip("pympler.asizeof")
    obj = ordinary()[key]
    for value in (obj, *getattr(obj, "__dict__", {}).values()):
        getattr(value, "__dict__", None)  # Pympler materializes __dict__: do it first
    assert memtrim.asizeof(obj) == asizeof.asizeof(obj)
    assert memtrim.asized(obj, detail=2).format() == asizeof.asized(obj, detail=2).format()


def test_materialized_instance_matches_pympler(engine):
    asizeof = pytest.importorskip("pympler.asizeof")
    obj = Plain()
    obj.__dict__  # noqa: B018 - materialize, as Pympler will
    assert memtrim.asizeof(obj) == asizeof.asizeof(obj)


def test_article_list_example(engine):
    numbers = [1, 2, 3, 4, 5]
    assert memtrim.asizeof(numbers) == a8(sys.getsizeof(numbers)) + 5 * 32
    text = memtrim.asized([1, 2, [3, 4], "string"], detail=1).format()
    inner, word = [3, 4], "string"
    lines = text.splitlines()
    assert (
        lines[1]
        == f"    [3, 4] size={a8(sys.getsizeof(inner)) + 64} flat={a8(sys.getsizeof(inner))}"
    )
    assert lines[2] == f"    'string' size={a8(sys.getsizeof(word))} flat={a8(sys.getsizeof(word))}"
    assert lines[3:] == ["    1 size=32 flat=32", "    2 size=32 flat=32"]


def test_shared_objects_counted_once_and_cycles_end(engine):
    item = [1.5]
    outer = [item, item, (item,)]
    expected = a8(sys.getsizeof(outer)) + a8(sys.getsizeof(item)) + 24 + a8(sys.getsizeof((1,)))
    assert memtrim.asizeof(outer) == expected
    cycle: list = []
    cycle.append(cycle)
    assert memtrim.asizeof(cycle) == a8(sys.getsizeof(cycle))


def test_asizesof_and_top_level_objects(engine):
    inner = [2.5]
    outer = [inner]
    flat_outer, flat_inner = a8(sys.getsizeof(outer)), a8(sys.getsizeof(inner))
    assert memtrim.asizesof(outer, inner) == (flat_outer, flat_inner + 24)
    assert memtrim.asizeof(outer, inner) == flat_outer + flat_inner + 24
    assert memtrim.asizesof(inner, inner) == (flat_inner + 24, flat_inner + 24)


def test_linked_list_of_a_million_nodes(engine):
    n = 1_000_000 if engine == "native" else 100_000
    head = None
    for _ in range(n):
        head = (head,)
    assert memtrim.asizeof(head) == n * a8(sys.getsizeof((None,))) + 16  # None is 16 bytes


def test_limit_reproduces_pympler_depth_cut(engine):
    head = None
    for _ in range(150):
        head = [head]
    node = a8(sys.getsizeof([None]))
    assert memtrim.asizeof(head, limit=100) == 101 * node
    assert memtrim.asizeof(head) == 150 * node + 16


def test_inline_values_sized_without_materializing(engine):
    # the bytes charged are checked against tracemalloc in test_sizing_layout.py
    obj = Plain()
    if _layout.inline_values(obj) is None:
        pytest.skip("no inline values on this interpreter build")
    refs_before = [type(r) for r in gc.get_referents(obj)]
    tree = memtrim.asized(obj, detail=2)
    assert _layout.materialized_dict(obj) is None
    assert [type(r) for r in gc.get_referents(obj)] == refs_before
    values = tree.get("__dict__")
    assert values is not None and values.flat > 0
    assert [ref.name for ref in values.refs][:2] == ["[K] name", "[V] name: 'plain'"]
    attrs = a8(sys.getsizeof("name")) + a8(sys.getsizeof("values")) + a8(sys.getsizeof("plain"))
    attrs += a8(sys.getsizeof(obj.values)) + 2 * 24
    assert tree.size == memtrim.asizeof(obj) == a8(sys.getsizeof(obj)) + values.flat + attrs


def test_deque_items_are_counted(engine):
    items = collections.deque([1.5, 2.5])
    assert memtrim.asizeof(items) == a8(sys.getsizeof(items)) + 2 * 24


def test_memoryview_buffer_is_counted(engine):
    data = b"x" * 1000
    view = memoryview(data)
    assert memtrim.asizeof(view) == a8(sys.getsizeof(view)) + a8(sys.getsizeof(data))


def test_array_is_its_getsizeof(engine):
    values = array.array("d", [1.0, 2.0, 3.0])
    assert memtrim.asizeof(values) == a8(sys.getsizeof(values))


def test_numpy_view_charges_no_data_it_does_not_own(engine):
    np = pytest.importorskip("numpy")
    base = np.zeros(10_000, dtype=np.float64)
    view = base[::2]
    assert memtrim.asizeof(base) == a8(sys.getsizeof(base))
    assert memtrim.asizeof(view) == a8(sys.getsizeof(view))
    assert sys.getsizeof(view) < base.nbytes


class Hostile:
    calls = 0

    def __getattr__(self, name):
        Hostile.calls += 1
        raise RuntimeError(name)

    def __sizeof__(self):
        raise RuntimeError("no size")

    def __len__(self):
        raise RuntimeError("no len")


def test_hostile_dunders_are_sized_not_fatal(engine):
    Hostile.calls = 0
    obj = Hostile()
    size = memtrim.asizeof(obj)
    expected = object.__sizeof__(obj) + 16 + (16 if sys.version_info >= (3, 11) else 0)
    assert memtrim.flatsize(obj) == expected
    assert size >= expected
    assert memtrim.asized(obj, detail=2).size == size
    assert Hostile.calls == 0


def test_weakrefs_and_proxies(engine):
    target = Plain()
    ref, proxy = weakref.ref(target), weakref.proxy(target)
    del target
    gc.collect()
    assert memtrim.asizeof(ref) == a8(sys.getsizeof(ref)) + 16  # dead: refers to None
    assert memtrim.asizeof(proxy) == a8(type(proxy).__basicsize__ + 16)
    memtrim.asized(proxy, detail=3).format()


def test_classes_functions_modules_follow_pympler_defaults(engine):
    assert memtrim.asizeof(Plain) == 0
    assert memtrim.asizeof(test_weakrefs_and_proxies) == 0
    assert memtrim.asizeof(len) == 0
    assert memtrim.asizeof(Plain, code=True) > 0


def test_flatsize_is_unaligned_by_default():
    word = "abc"
    assert memtrim.flatsize(word) == sys.getsizeof(word)
    assert memtrim.flatsize(word, align=8) == a8(sys.getsizeof(word))


def test_footprint_rounds_each_allocation():
    empty: list = []
    assert memtrim.asizeof(empty, footprint=True) == 64  # 56 bytes -> pymalloc class 64
    full = list(range(100))  # header 56 -> 64, items 800 -> malloc chunk 816
    assert sizing.footprint_of(full, sys.getsizeof(full)) == 64 + 816


@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13 keeps values inside the object")
def test_footprint_counts_embedded_values_once_when_a_dict_exists(engine):
    obj = Plain()
    obj.values = 1.5  # no list: only the instance, its values and shared strings
    if _layout.inline_values(obj) is None:
        pytest.skip("no inline values on this interpreter build")
    before = memtrim.asizeof(obj, footprint=True)
    assert sizing.footprint_of(obj, sys.getsizeof(obj)) == sizing._allocated(
        sys.getsizeof(obj) + _layout.embedded_values_nbytes(obj)
    )
    obj.__dict__  # noqa: B018 - the dict points into the object's own values
    after = memtrim.asizeof(obj, footprint=True)
    head = dict.__basicsize__ + 16
    assert after == before + sizing._allocated(head)


def test_bad_options_raise_clearly():
    with pytest.raises(ValueError, match="detail"):
        memtrim.asized([], detail=-1)
    with pytest.raises(TypeError, match="bogus"):
        memtrim.asizeof([], bogus=1)
    with pytest.raises(ValueError, match="align"):
        memtrim.asizeof([], align=3)
    with pytest.raises(ValueError, match="limit"):
        memtrim.asizeof([], limit=-1)


# -- the native walker sizes instances itself: it must agree with the Python rules ----------


class Many:
    def __init__(self, n: int) -> None:
        for i in range(n):
            setattr(self, f"a{i}", (i, str(i)))


class Deleted(Plain):
    def __init__(self) -> None:
        super().__init__()
        self.extra = {"k": [1, 2]}
        del self.name


class SlotsAndDict(Slotted):
    def __init__(self) -> None:
        super().__init__()
        self.more = [4.5]


class HalfSet:
    __slots__ = ("set_", "unset")

    def __init__(self) -> None:
        self.set_ = [9.5]


class IntWithDict(int):
    pass


class ListSub(list):
    pass


class SetSub(frozenset):
    pass


class TupleSub(tuple):
    __slots__ = ()


class LyingSize(Plain):
    def __sizeof__(self):
        return 10_000


@dataclasses.dataclass(slots=True)
class SlotPoint:
    x: int
    y: list


def instance_zoo() -> list[object]:
    """Instances of every layout the native walker reads, fresh each call."""
    materialized = Plain()
    materialized.__dict__  # noqa: B018
    shared = [0.25]
    with_shared = Plain()
    with_shared.values = shared
    int_dict = IntWithDict(7)
    int_dict.label = "seven"
    listsub = ListSub([1.5, 2.5])
    listsub.tag = "t"

    def gen(rows):
        total = 0
        for row in rows:
            total += len(row)
            yield total

    suspended = gen([[float(i)] for i in range(3)])
    next(suspended)
    return [
        suspended,
        gen([[0.5]]),
        ListSub([1.5, 2.5]),
        SetSub({"a", 1.5}),
        TupleSub((1.5, "x" * 50)),
        Plain(),
        materialized,
        Point(),
        Many(3),
        Many(40),  # more attributes than the shared keys hold: a real dict
        Deleted(),
        Slotted(),
        SlotsAndDict(),
        HalfSet(),
        int_dict,
        listsub,
        LyingSize(),
        Hostile(),
        SlotPoint(1, [2, 3]),
        [with_shared, shared, with_shared],
        {"objs": [Plain() for _ in range(5)], "points": (Point(), Point())},
        collections.deque([Plain(), Slotted()]),
    ]


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"align": 1},
        {"align": 16},
        {"limit": 0},
        {"limit": 1},
        {"limit": 2},
        {"limit": 3},
        {"code": True},
        {"code": True, "ignored": False},
        {"ignored": False},
    ],
    ids=repr,
)
def test_native_instances_match_the_python_rules(opts):
    options = sizing.Options.parse(opts)
    for obj in instance_zoo():
        native = sizing.totals((obj,), options)
        with oracles.python("Walker"):
            python = sizing.totals((obj,), options)
        assert native == python, (type(obj).__name__, opts)
    objs = tuple(instance_zoo())
    native = sizing.totals(objs, options)
    with oracles.python("Walker"):
        python = sizing.totals(objs, options)
    assert native == python


@pytest.mark.parametrize("detail", [0, 1, 2, 4])
@pytest.mark.parametrize("opts", [{}, {"footprint": True}, {"limit": 2}, {"code": True}], ids=repr)
def test_native_trees_match_the_python_rules(detail, opts):
    options = sizing.Options.parse(opts)
    objs = instance_zoo()
    native = sizing.sized_trees((objs,), options, detail)
    with oracles.python("Walker"):
        python = sizing.sized_trees((objs,), options, detail)
    assert native == python
    assert native[0].size == sizing.totals((objs,), options)[0]


def test_native_walk_sizes_instances_without_calling_back(monkeypatch):
    calls = []
    original = sizing.describe

    def counting(obj, opts, depth):
        calls.append(type(obj))
        return original(obj, opts, depth)

    monkeypatch.setattr(sizing, "describe", counting)
    rows = [Plain() for _ in range(1000)] + [Point() for _ in range(1000)]
    rows += [Slotted() for _ in range(1000)]
    memtrim.asizeof(rows)
    assert len(calls) <= 5  # once for each class (sized 0), nothing per instance


class Mutating:
    """A mapping whose items() empties the containers the walk is in the middle of."""

    victims: list = []

    def __getitem__(self, key):
        raise KeyError(key)

    def __len__(self):
        return 1

    def __iter__(self):
        return iter(["k"])

    def items(self):
        for victim in Mutating.victims:
            victim.clear()
        gc.collect()
        return [("k", [1.5])]


def test_callbacks_that_free_objects_cannot_crash_the_walk(engine):
    # The proxy pops first; the lists after it are already on the work stack
    # when its items() frees them.
    holder = [types.MappingProxyType(Mutating())] + [[float(i), str(i)] for i in range(300)]
    other = {str(i): [float(i)] for i in range(300)}
    Mutating.victims = [holder, other]
    try:
        size = memtrim.asizeof([holder, other, weakref.WeakValueDictionary()])
        assert size > 0
    finally:
        Mutating.victims = []
