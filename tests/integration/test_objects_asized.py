"""The article's asizeof/asized examples, run as a script: exact layout and numbers."""

from __future__ import annotations

import json
import sys

import pytest

ARTICLE = """
import json
import sys

import memtrim
from memtrim.objects import _layout


class Normal:
    pass


class Smaller:
    __slots__ = ()


normal, smaller, materialized = Normal(), Smaller(), Normal()
materialized.__dict__  # built now, as Pympler would build it
out = {
    "asizeof": memtrim.asizeof([1, 2, 3, 4, 5]),
    "list": memtrim.asized([1, 2, 3, 4, 5], detail=1).format(),
    "mixed": memtrim.asized([1, 2, [3, 4], "string"], detail=1).format(),
    "normal": memtrim.asized(normal, detail=1).format(),
    "smaller": memtrim.asized(smaller, detail=1).format(),
    "materialized": memtrim.asized(materialized, detail=1).format(),
    "reprs": [repr(normal), repr(smaller), repr(materialized)],
    "sizes": [sys.getsizeof(normal), sys.getsizeof(smaller), sys.getsizeof(materialized)],
    "values": _layout.inline_nbytes(normal),
    "dict": sys.getsizeof(materialized.__dict__),
    "normal_unchanged": _layout.materialized_dict(normal) is None,
}
try:
    from pympler import asizeof
except ImportError:
    pass
else:
    out["pympler"] = {
        "list": asizeof.asized([1, 2, 3, 4, 5], detail=1).format(),
        "mixed": asizeof.asized([1, 2, [3, 4], "string"], detail=1).format(),
        "smaller": asizeof.asized(smaller, detail=1).format(),
        "materialized": asizeof.asized(materialized, detail=1).format(),
    }
print(json.dumps(out))
"""


def a8(n: int) -> int:
    return (n + 7) & ~7


@pytest.fixture(scope="module")
def article(tmp_path_factory):
    from tests.conftest import Runner

    runner = Runner(tmp_path_factory.mktemp("article"))
    proc = runner.python(str(runner.write(ARTICLE)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_list_of_ints(article):
    numbers = [1, 2, 3, 4, 5]  # built the same way as in the script
    flat = a8(sys.getsizeof(numbers))
    assert article["asizeof"] == flat + 5 * 32
    assert article["list"].splitlines() == [
        f"[1, 2, 3, 4, 5] size={flat + 5 * 32} flat={flat}",
        *(f"    {i} size=32 flat=32" for i in range(1, 6)),
    ]


def test_mixed_list(article):
    outer, inner, word = [1, 2, [3, 4], "string"], [3, 4], "string"
    inner_size = a8(sys.getsizeof(inner)) + 64
    word_size = a8(sys.getsizeof(word))
    total = a8(sys.getsizeof(outer)) + inner_size + word_size + 64
    assert article["mixed"].splitlines() == [
        f"[1, 2, [3, 4], 'string'] size={total} flat={a8(sys.getsizeof(outer))}",
        f"    [3, 4] size={inner_size} flat={a8(sys.getsizeof(inner))}",
        f"    'string' size={word_size} flat={word_size}",
        "    1 size=32 flat=32",
        "    2 size=32 flat=32",
    ]


def test_instances_with_and_without_a_dict(article):
    normal_repr, smaller_repr, materialized_repr = article["reprs"]
    normal, smaller, materialized = (a8(n) for n in article["sizes"])
    values = a8(article["values"])
    assert article["normal"].splitlines() == [
        f"{normal_repr} size={normal + values} flat={normal}",
        f"    __dict__ size={values} flat={values}",
        "    __class__ size=0 flat=0",
    ]
    assert article["normal_unchanged"]  # sizing did not build a __dict__
    assert article["smaller"].splitlines() == [
        f"{smaller_repr} size={smaller} flat={smaller}",
        "    __class__ size=0 flat=0",
    ]
    dict_size = a8(article["dict"])
    assert article["materialized"].splitlines() == [
        f"{materialized_repr} size={materialized + dict_size} flat={materialized}",
        f"    __dict__ size={dict_size} flat={dict_size}",
        "    __class__ size=0 flat=0",
    ]


def test_same_text_as_pympler(article):
    if "pympler" not in article:
        pytest.skip("pympler is not installed")
    for key, text in article["pympler"].items():
        assert article[key] == text, key
