"""The advisor's rules: on hand-made line figures, and through ``advise()`` on
objects whose sizes are known exactly."""

from __future__ import annotations

import array
import ast
import functools
import gc
import math
import random
import sys
import tracemalloc

import pytest

from memtrim.advice.rules import numbers
from memtrim.advice.rules.lines import LineFigures, generator_advice, line_rules, mmap_advice
from memtrim.advice.rules.sites import Line
from memtrim.advice.session import advise, figures_from_snapshot, line_advice

MIB = 2**20
FLOAT = sys.getsizeof(1.5)  # 24 on 64-bit CPython


def fig(source: str, high: int = 50 * MIB, end: int = 0, lineno: int = 7) -> LineFigures:
    return LineFigures(Line("/app/prog.py", "main", lineno, source), high, end)


def only(found, kind):
    """The one advice of ``kind`` in ``found``."""
    of_kind = [a for a in found if a.kind == kind]
    assert len(of_kind) == 1, [(a.kind, a.type, a.saving) for a in found]
    return of_kind[0]


def kinds(found) -> set[str]:
    return {a.kind for a in found}


def expression_after_the_colon(fix: str) -> str:
    """The code a generator fix proposes, checked to be a Python expression (or,
    for a loop, a ``for`` header)."""
    code = fix.split(": ", 1)[1]
    if code.startswith("for "):
        ast.parse(code + " pass")
    else:
        ast.parse(code, mode="eval")
    return code


# ------------------------------------------------------------------ lines: generator


def test_a_list_summed_once_becomes_a_generator():
    found = generator_advice(fig("total = sum([x*x for x in r])", 50 * MIB, 1000), MIB)
    assert found is not None and found.kind == "generator"
    assert expression_after_the_colon(found.fix) == "sum(x*x for x in r)"
    assert found.fix == "pass a generator: sum(x*x for x in r)"
    # what the line built and let go is the saving; what it kept stays
    assert (found.bytes, found.after, found.saving) == (50 * MIB, 1000, 50 * MIB - 1000)
    assert (found.filename, found.lineno, found.qualname) == ("/app/prog.py", 7, "main")
    assert found.source == "total = sum([x*x for x in r])"
    assert found.confidence == "exact" and found.measured == "all"
    assert found.type == "list" and found.count == 1
    assert found.when == "peak"  # what it built was let go: the peak shows it


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("m = max([len(w) for w in words])", "max(len(w) for w in words)"),
        ("ok = all([f(x) for x in xs])", "all(f(x) for x in xs)"),
        ("s = set([k.lower() for k in keys])", "set(k.lower() for k in keys)"),
        ("    return sum([a * b for a, b in pairs])", "sum(a * b for a, b in pairs)"),
        ("n = sum(list(it))", "sum(it)"),
    ],
)
def test_other_consumers(source, code):
    found = generator_advice(fig(source), MIB)
    assert found is not None
    assert expression_after_the_colon(found.fix) == code


def test_a_for_loop_over_readlines_iterates_the_file():
    found = [
        a for a in line_rules([fig("for line in f.readlines():")], MIB) if a.kind == "generator"
    ]
    assert len(found) == 1
    item = found[0]
    assert expression_after_the_colon(item.fix) == "for line in f:"
    assert item.confidence == "review"  # the loop body may change what is iterated
    assert any("loop body" in c for c in item.caveats)


def test_a_for_loop_over_a_comprehension():
    found = generator_advice(fig("for x in [a * 2 for a in r]:"), MIB)
    assert found is not None
    assert expression_after_the_colon(found.fix) == "for x in (a * 2 for a in r):"


@pytest.mark.parametrize(
    "source",
    [
        'out = "".join([str(x) for x in r])',  # join makes a list of a generator anyway
        "xs = [x*x for x in r]",  # bound to a name: may be used twice
        "n = len([x for x in r])",  # len needs the list
        "v = sum([x for x in r][:10])",  # sliced: not consumed once
        "total = sum([x for x in r], start)",  # two arguments
        "data = f.read()",
        "this is not python (",
        "",
    ],
)
def test_no_generator_advice(source):
    assert generator_advice(fig(source), MIB) is None


def test_no_generator_advice_below_the_threshold():
    source = "total = sum([x*x for x in r])"
    assert generator_advice(fig(source, high=MIB - 1, end=0), MIB) is None
    # the transient part (high-water mark less what is kept) is what counts
    assert generator_advice(fig(source, high=10 * MIB, end=9 * MIB + 1), MIB) is None
    assert generator_advice(fig(source, high=10 * MIB, end=9 * MIB), MIB) is not None


@pytest.mark.parametrize(
    "source",
    [
        "m = min([x for x in r], default=0)",
        "s = sorted([x for x in r], key=abs, reverse=True)",
    ],
)
def test_a_generator_fix_keeps_the_consumers_keywords(source):
    found = generator_advice(fig(source), MIB)
    if found is None:
        return  # no advice is a correct answer too
    code = expression_after_the_colon(found.fix)
    call = ast.parse(source.split(" = ", 1)[1], mode="eval").body
    proposed = ast.parse(code, mode="eval").body
    assert isinstance(proposed, ast.Call)
    assert [k.arg for k in proposed.keywords] == [k.arg for k in call.keywords]


# ------------------------------------------------------------------ lines: mmap


def test_a_whole_file_read_gets_mmap_advice():
    found = mmap_advice(fig("data = f.read()", high=40 * MIB, end=40 * MIB), MIB)
    assert found is not None and found.kind == "mmap"
    assert (found.bytes, found.after, found.saving) == (40 * MIB, 0, 40 * MIB)
    assert "mmap" in found.fix
    # read_bytes / read_text too, and what the line held at the end if more
    assert mmap_advice(fig("blob = path.read_bytes()", high=0, end=5 * MIB), MIB).bytes == 5 * MIB
    assert mmap_advice(fig("text = p.read_text( )"), MIB) is not None


@pytest.mark.parametrize(
    "source",
    ["data = f.read(100)", "data = f.read(n)", "x = reader()", "chunk = f.readline()"],
)
def test_no_mmap_advice_for_bounded_reads(source):
    assert mmap_advice(fig(source), MIB) is None


def test_no_mmap_advice_below_the_threshold():
    assert mmap_advice(fig("data = f.read()", high=MIB - 1, end=MIB - 1), MIB) is None


def test_line_rules_run_both_and_pass_when_on():
    figures = [
        fig("total = sum([x*x for x in r])", lineno=1),
        fig("data = f.read()", lineno=2),
        fig("xs = [x for x in r]", lineno=3),
        fig("data = f.read()", high=10, end=10, lineno=4),
    ]
    found = line_rules(figures, MIB, when="peak")
    assert sorted((a.kind, a.lineno) for a in found) == [("generator", 1), ("mmap", 2)]
    assert {a.when for a in found} == {"peak"}


def test_line_advice_from_a_line_tables_rows():
    rows = [
        ("/app/p.py", "main", 3, "t = sum([x for x in r])", 30 * MIB, 0),
        ("/app/p.py", "main", 4, "u = sum([x for x in r])", 30 * MIB, -5),  # negative: clipped
        ("/app/p.py", "main", 5, "v = sum([x for x in r])", MIB // 2, 0),  # under the threshold
    ]
    found = line_advice(rows)
    assert [(a.lineno, a.saving, a.when) for a in found] == [
        (3, 30 * MIB, "peak"),
        (4, 30 * MIB, "peak"),
    ]
    with pytest.raises(TypeError):
        line_advice(rows, threshold="1M")
    with pytest.raises(ValueError):
        line_advice(rows, threshold=-1)


def test_figures_from_a_snapshot_add_up_the_nodes_of_a_line():
    # stats: live bytes first, the high-water mark tenth
    def stats(live: int, high: int) -> tuple[int, ...]:
        return (live, 1, high, 1, live, 1, 0, 0, 0, high)

    raw = {
        "slots": [("/nonexistent/p.py", "main", 1), ("/nonexistent/p.py", "f", 10)],
        "nodes": [(-1, -1, -1), (0, 0, 5), (0, 0, 5), (1, 1, 12), (0, 0, 6)],
        "stats": [stats(99, 99), stats(10, 100), stats(0, 50), stats(7, 70), (1, 2, 3)],
    }
    figures = {(f.line.filename, f.line.lineno): f for f in figures_from_snapshot(raw)}
    assert set(figures) == {("/nonexistent/p.py", 5), ("/nonexistent/p.py", 12)}
    five = figures[("/nonexistent/p.py", 5)]
    assert (five.high_water, five.at_end, five.line.qualname) == (150, 10, "main")
    twelve = figures[("/nonexistent/p.py", 12)]
    assert (twelve.high_water, twelve.at_end, twelve.line.qualname) == (70, 7, "f")


# ------------------------------------------------------------------ numbers: plain functions


def test_owned_bytes_counts_the_items_only_the_container_holds():
    floats = [float(i) + 0.5 for i in range(5)]  # five distinct floats, held only here
    assert FLOAT == 24
    assert numbers.owned_bytes(floats, floats) == sys.getsizeof(floats) + 5 * 24


def test_owned_bytes_leaves_out_items_held_elsewhere():
    floats = [float(i) + 0.5 for i in range(5)]
    elsewhere = list(floats)
    assert numbers.owned_bytes(floats, floats) == sys.getsizeof(floats)
    del elsewhere
    assert numbers.owned_bytes(floats, floats) == sys.getsizeof(floats) + 5 * 24
    # only one of them held elsewhere
    one = floats[2]
    assert numbers.owned_bytes(floats, floats) == sys.getsizeof(floats) + 4 * 24
    del one


def test_owned_bytes_leaves_out_shared_small_ints():
    small = list(range(1, 6))
    assert numbers.owned_bytes(small, small) == sys.getsizeof(small)


@pytest.mark.parametrize(
    ("lo", "hi", "code"),
    [
        (0, 0, "B"),
        (0, 255, "B"),
        (0, 256, "H"),
        (-1, 127, "b"),
        (-128, 127, "b"),
        (-1, 128, "h"),
        (-129, 0, "h"),
        (0, 65535, "H"),
        (0, 65536, "I"),
        (-1, 2**31 - 1, "i"),
        (0, 2**32 - 1, "I"),
        (0, 2**32, "Q"),
        (-1, 2**31, "q"),
        (0, 2**63, "Q"),
        (0, 2**64 - 1, "Q"),
        (-(2**63), 2**63 - 1, "q"),
        (0, 2**64, None),
        (-1, 2**63, None),
        (-(2**63) - 1, 0, None),
    ],
)
def test_typecode_bounds(lo, hi, code):
    assert numbers._typecode(lo, hi) == code
    if code is not None:  # the typecode really holds both ends
        assert list(array.array(code, [lo, hi])) == [lo, hi]


# ------------------------------------------------------------------ advise(): numbers


def test_a_list_of_floats_becomes_an_array_of_doubles():
    rng = random.Random(1)
    floats = [rng.random() for _ in range(100_000)]
    found = advise(floats, threshold=0)
    item = only(found, "array")
    assert kinds(found) == {"array"}
    assert "array.array('d'" in item.fix
    assert item.type == "list of float" and item.count == 1
    assert item.bytes == sys.getsizeof(floats) + 100_000 * 24
    assert item.after == sys.getsizeof(array.array("d", floats))
    assert item.measured == "all"


def test_small_ints_become_bytes_and_only_the_list_is_counted():
    ints = list(range(200))
    item = only(advise(ints, threshold=0), "array")
    assert "array.array('B'" in item.fix and "uint8" in item.fix
    assert item.bytes == sys.getsizeof(ints)  # the small ints are shared
    assert item.after == sys.getsizeof(array.array("B", ints))


def test_negative_ints_get_a_signed_typecode():
    ints = [i - 1000 for i in range(2000)]
    item = only(advise(ints, threshold=0), "array")
    assert "array.array('h'" in item.fix
    assert item.after == sys.getsizeof(array.array("h", ints))


def test_a_tuple_of_floats_too():
    floats = tuple(float(i) + 0.25 for i in range(1000))
    item = only(advise(floats, threshold=0), "array")
    assert item.type == "tuple of float"
    assert item.bytes == sys.getsizeof(floats) + 1000 * 24


def test_no_array_advice_for_a_big_int():
    ints = [*range(200), 2**70]
    assert "array" not in kinds(advise(ints, threshold=0))


def test_no_array_advice_for_mixed_numbers_or_too_short_lists():
    assert "array" not in kinds(advise([1, 2.5] * 500, threshold=0))
    assert "array" not in kinds(advise([float(i) for i in range(5)], threshold=0))
    assert "array" not in kinds(advise([True, False] * 500, threshold=0))


def test_the_threshold_leaves_out_small_savings():
    floats = [float(i) + 0.5 for i in range(1000)]  # saves about 24 KB
    assert advise(floats) == []  # default: 1 MiB
    assert advise(floats, threshold=10_000)
    assert advise(floats, threshold=10**6) == []


# ------------------------------------------------------------------ advise(): instances


class Plain:
    def __init__(self) -> None:
        self.alpha = None
        self.beta = None
        self.gamma = None


class Slotted:
    __slots__ = ("alpha", "beta", "gamma")


def _traced_size(n: int) -> tuple[int, list[Plain]]:
    """Bytes tracemalloc saw for ``n`` new Plain instances, less their list."""
    if tracemalloc.is_tracing():  # python -X tracemalloc: not ours to start and stop
        pytest.skip("tracemalloc is already tracing")
    gc.disable()  # a collection in between would free (or grow) other things
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        objs = [Plain() for _ in range(n)]
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
        gc.enable()
    return after - before - sys.getsizeof(objs), objs


def test_slots_for_a_class_with_a_fixed_attribute_set():
    # The per-instance size, from the interpreter's own allocations: the first
    # instances of a class get larger value arrays while its shared keys
    # settle (3.11), so the class is warmed up first; the difference of two
    # traced runs leaves out the constant costs of measuring (the ints
    # tracemalloc returns, the comprehension), so the size per instance is
    # exact: the division must have no remainder. The attributes hold None,
    # so no value object is counted: what remains is the object and its
    # attribute storage, which is what slots change.
    warm = [Plain() for _ in range(200)]
    # an interpreter table that happens to grow during one of the runs adds its
    # bytes to it: measured again then (the remainder tells)
    for _ in range(3):
        small, _ = _traced_size(1000)
        big, instances = _traced_size(5000)
        per, rest = divmod(big - small, 4000)
        if rest == 0:
            break
    assert rest == 0, (big, small)
    slotted = Slotted()
    slotted.alpha = slotted.beta = slotted.gamma = None
    found = advise(instances, threshold=0)
    item = only(found, "slots")
    assert item.count == 5000
    assert item.bytes == 5000 * per
    assert item.after == 5000 * sys.getsizeof(slotted)
    assert "__slots__ = ('alpha', 'beta', 'gamma')" in item.fix
    assert item.type == f"{__name__}.Plain"  # the class, named by its module
    del warm


class Varied:
    def __init__(self, i: int) -> None:
        self.a = i
        if i % 2:
            self.b = i
        else:
            self.c = i


def test_no_slots_when_attributes_differ():
    instances = [Varied(i) for i in range(5000)]
    assert "slots" not in kinds(advise(instances, threshold=0))


def test_no_slots_under_a_thousand_instances():
    instances = [Plain() for _ in range(999)]
    assert "slots" not in kinds(advise(instances, threshold=0))


def test_records_for_dicts_with_the_same_keys():
    dicts = [{"x": i, "y": i * 2, "z": -i} for i in range(2000)]
    item = only(advise(dicts, threshold=0), "records")
    assert item.count == 2000
    assert item.bytes == sum(sys.getsizeof(d) for d in dicts)
    twin = Slotted()
    twin.alpha = twin.beta = twin.gamma = None
    assert item.after == 2000 * sys.getsizeof(twin)
    assert "x, y, z" in item.fix


def test_no_records_for_varied_keys():
    dicts = [{"x": i, f"k{i}": i} for i in range(2000)]
    assert "records" not in kinds(advise(dicts, threshold=0))


# ------------------------------------------------------------------ advise(): strings


def test_equal_strings_can_be_interned():
    strs = ["".join(["ab", str(i % 3)]) for i in range(10_000)]  # 3 values, 10,000 objects
    assert len({id(s) for s in strs}) == 10_000
    seen: dict[str, str] = {}
    duplicates = sum(sys.getsizeof(s) for s in strs if seen.setdefault(s, s) is not s)
    item = only(advise(strs, threshold=0), "intern")
    assert item.bytes - item.after == duplicates
    assert item.bytes == sum(sys.getsizeof(s) for s in strs)
    assert item.count == 10_000
    assert item.confidence == "exact"


def test_no_intern_for_distinct_strings():
    strs = ["".join(["ab", str(i)]) for i in range(10_000)]
    assert "intern" not in kinds(advise(strs, threshold=0))


def _keys(n: int) -> set[str]:
    return {"".join(["key-", str(i), "-", str(i * 7919)]) for i in range(n)}


def test_a_big_set_of_strings_gets_trie_bloom_and_hll():
    n = 20_000
    keys = _keys(n)
    held = sys.getsizeof(keys) + sum(sys.getsizeof(k) for k in keys)  # each str held once
    found = advise(keys, threshold=4)
    assert kinds(found) == {"trie", "bloom", "hll"}
    bloom = only(found, "bloom")
    assert bloom.after == math.ceil(-n * math.log(0.01) / math.log(2) ** 2) // 8 + 1
    assert bloom.count == n and bloom.bytes == held
    assert bloom.measured == "computed" and bloom.confidence == "changes results"
    hll = only(found, "hll")
    assert hll.after == 4096 and hll.bytes == held
    trie = only(found, "trie")
    assert trie.bytes == held and 0 < trie.after < held
    assert trie.measured in ("all", "computed")


def test_a_big_set_of_strings_at_threshold_zero():
    n = 20_000
    keys = _keys(n)
    found = advise(keys, threshold=0)
    assert kinds(found) >= {"trie", "bloom", "hll"}
    bloom = only(found, "bloom")
    assert bloom.after == math.ceil(-n * math.log(0.01) / math.log(2) ** 2) // 8 + 1
    assert only(found, "hll").after == 4096


def test_the_bytes_of_a_set_at_threshold_zero_are_exact():
    keys = _keys(20_000)
    held = sys.getsizeof(keys) + sum(sys.getsizeof(k) for k in keys)
    found = advise(keys, threshold=0)
    assert only(found, "bloom").bytes == held


def test_a_frozenset_gets_no_hll_and_a_small_set_nothing():
    keys = frozenset("".join(["k", str(i)]) for i in range(20_000))
    assert kinds(advise(keys, threshold=0)) == {"trie", "bloom"}
    small = {"".join(["k", str(i)]) for i in range(9_999)}
    assert not kinds(advise(small, threshold=0)) & {"trie", "bloom", "hll"}


# ------------------------------------------------------------------ advise(): numpy


def test_a_numpy_array_of_small_ints_gets_uint8():
    np = pytest.importorskip("numpy")
    a = np.arange(1_000_000, dtype=np.int64) % 100
    item = only(advise(a, threshold=0), "dtype")
    assert "uint8" in item.fix
    assert item.bytes == sys.getsizeof(a)
    assert item.after == item.bytes - a.nbytes + a.size
    assert item.confidence == "review"


def test_a_numpy_array_of_negative_ints_gets_int8_and_a_wide_one_nothing():
    np = pytest.importorskip("numpy")
    a = (np.arange(100_000, dtype=np.int64) % 200) - 100
    item = only(advise(a, threshold=0), "dtype")
    assert "int8" in item.fix and "uint8" not in item.fix
    assert item.after == item.bytes - a.nbytes + a.size
    wide = np.arange(100_000, dtype=np.int64) * 2**40
    assert "dtype" not in kinds(advise(wide, threshold=0))


def test_a_float64_array_gets_float32_that_changes_results():
    np = pytest.importorskip("numpy")
    a = np.random.default_rng(0).random(1_000_000)
    item = only(advise(a, threshold=0), "dtype")
    assert "float32" in item.fix
    assert item.confidence == "changes results"
    assert item.after == item.bytes - a.nbytes + a.size * 4


def test_a_view_gets_no_dtype_advice():
    np = pytest.importorskip("numpy")
    base = np.arange(1_000_000, dtype=np.int64) % 100
    view = base[::2]
    # only the array that owns the buffer can change its dtype
    dtype = [a for a in advise(view, threshold=0) if a.kind == "dtype"]
    assert all(a.type == "numpy.ndarray int64[1000000]" for a in dtype), dtype


# ------------------------------------------------------------------ advise(): caches


def _filled_cache(value):
    @functools.lru_cache(maxsize=None)  # noqa: UP033 (the spelling under test)
    def cached(i: int) -> list:
        return value(i)

    for i in range(5000):
        cached(i)
    return cached


def _cache_dict_size(wrapper) -> int:
    import gc

    dicts = [r for r in gc.get_referents(wrapper) if type(r) is dict and len(r) == 5000]
    assert len(dicts) == 1
    return sys.getsizeof(dicts[0])


def test_an_unbounded_cache_gets_a_bound():
    cached = _filled_cache(lambda i: [None] * 100)
    item = only(advise(cached, threshold=0), "cache")
    assert item.count == 5000
    assert item.after == item.bytes * 128 // 5000
    # the cache's table and the 5,000 results only it holds, at least
    assert item.bytes >= _cache_dict_size(cached) + 5000 * sys.getsizeof([None] * 100)
    assert item.measured == "computed"
    assert "maxsize=128" in item.fix


def test_an_unbounded_cache_of_number_lists_counts_its_results():
    cached = _filled_cache(lambda i: [i] * 100)
    item = only(advise(cached, threshold=0), "cache")
    assert item.bytes >= _cache_dict_size(cached) + 5000 * sys.getsizeof([0] * 100)


def test_a_bounded_cache_gets_none():
    @functools.lru_cache(maxsize=128)
    def square_list(i: int) -> list[int]:
        return [i] * 100

    for i in range(5000):
        square_list(i)
    assert "cache" not in kinds(advise(square_list, threshold=0))


def test_a_small_unbounded_cache_gets_none():
    @functools.cache
    def twice(i: int) -> int:
        return 2 * i

    for i in range(100):
        twice(i)
    assert "cache" not in kinds(advise(twice, threshold=0))
