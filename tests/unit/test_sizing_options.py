"""Sizing options: Pympler's names and meanings, strict types, clear errors."""

from __future__ import annotations

import gc
import io
import sys

import pytest

import memtrim


def a8(n: int) -> int:
    return (n + 7) & ~7


@pytest.mark.parametrize("name", ["code", "footprint", "frames", "ignored", "derive", "infer"])
@pytest.mark.parametrize("value", ["no", 0, 1, None, 2])
def test_bool_options_must_be_bools(name, value):
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        memtrim.asizeof([1], **{name: value})


@pytest.mark.parametrize(
    ("opts", "error", "match"),
    [
        ({"align": True}, TypeError, "align must be an int"),
        ({"align": 8.0}, TypeError, "align must be an int"),
        ({"align": "8"}, TypeError, "align must be an int"),
        ({"align": 3}, ValueError, "align must be 0, 1 or a power of 2"),
        ({"align": -8}, ValueError, "align must be 0, 1 or a power of 2"),
        ({"limit": "3"}, TypeError, "limit must be None or an int"),
        ({"limit": 2.5}, TypeError, "limit must be None or an int"),
        ({"limit": True}, TypeError, "limit must be None or an int"),
        ({"limit": -1}, ValueError, "limit must be >= 0"),
        ({"clip": "x"}, TypeError, "clip must be an int"),
        ({"cutoff": -1}, ValueError, "cutoff must be >= 0"),
        ({"stats": "1"}, TypeError, "stats must be a number"),
        ({"above": -1}, ValueError, "above must be >= 0"),
        ({"stream": 3}, TypeError, "stream must be None or have a write"),
        ({"bogus": 1}, TypeError, "unknown option"),
        ({"all": "yes"}, TypeError, "all must be True, False or None"),
    ],
)
def test_bad_values_raise_clearly(opts, error, match):
    with pytest.raises(error, match=match):
        memtrim.asizeof([1], **opts)


def test_every_function_checks_its_options():
    for call in (
        lambda: memtrim.asizesof([1], code="yes"),
        lambda: memtrim.asized([1], footprint="no"),
        lambda: memtrim.flatsize([1], frames=2),
        lambda: memtrim.retained([1], ignored=None),
    ):
        with pytest.raises(TypeError):
            call()
    with pytest.raises(TypeError, match="unknown option"):
        memtrim.asized([1], all=True)  # Pympler's asized has no `all` either


def test_pympler_statistics_options_are_accepted_and_change_nothing():
    data = {"k": [1.5, "v"]}
    plain = memtrim.asizeof(data)
    out = io.StringIO()
    opts = {"stats": 2.1, "above": 1024, "cutoff": 5, "detail": 3, "derive": True, "stream": out}
    assert memtrim.asizeof(data, **opts) == plain
    assert memtrim.asizesof(data, **opts) == (plain,)
    assert memtrim.asized(data, detail=1, stats=1, cutoff=10).size == plain
    assert memtrim.flatsize(data, save=True, derive=True) == sys.getsizeof(data)
    assert out.getvalue() == ""  # memtrim prints no statistics


def test_all_sizes_every_tracked_object():
    gc.collect()
    total = memtrim.asizeof(all=True)
    assert total > memtrim.asizeof(gc.get_objects()[:100])
    assert memtrim.asizeof(all=False) == 0
    assert memtrim.asizeof([1.5], all=True) == memtrim.asizeof([1.5])  # objects given: ignored


class DictLike:
    def __init__(self) -> None:
        self._data = {"k": [2.5] * 4}

    def items(self):
        return self._data.items()

    def keys(self):
        return self._data.keys()

    def values(self):
        return self._data.values()

    def __len__(self):
        return len(self._data)

    def get(self, key, default=None):
        return self._data.get(key, default)

    def has_key(self, key):
        return key in self._data


def test_infer_sizes_dict_likes_through_their_items_like_pympler():
    obj = DictLike()
    as_instance = memtrim.asizeof(obj)
    inferred = memtrim.asizeof(obj, infer=True)
    values = obj._data["k"]
    assert inferred == a8(sys.getsizeof(obj)) + a8(sys.getsizeof("k")) + a8(
        sys.getsizeof(values)
    ) + a8(sys.getsizeof(2.5))
    assert as_instance != inferred
    asizeof = pytest.importorskip("pympler.asizeof")
    assert inferred == asizeof.asizeof(obj, infer=True)


def test_format_checks_its_arguments():
    tree = memtrim.asized([1, [2]], detail=2)
    with pytest.raises(TypeError, match="depth must be an int"):
        tree.format(depth="x")
    with pytest.raises(TypeError, match="format must be a str"):
        tree.format(format=3)
    with pytest.raises(ValueError, match="bad format"):
        tree.format(format="%(bogus)s")
    with pytest.raises(ValueError, match="order_by"):
        tree.format(order_by="bad")
    assert tree.format(depth=0).count("\n") == 0
    assert tree.format(depth=-1) == tree.format()
