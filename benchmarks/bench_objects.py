"""Benchmark: memtrim's asizeof, asized, footprint, retained, census and why()
against Pympler (or, where Pympler has nothing alike, against memtrim's own
census on the same heap).

Run alone with ``PYTHONPATH=src python benchmarks/bench_objects.py`` (add
``--quick`` for a smaller heap); ``benchmarks/run.py`` imports :func:`run`.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import memtrim


class Record:
    """An ordinary instance, as found in real heaps."""

    def __init__(self, i: int) -> None:
        self.id = i
        self.name = f"record-{i}"
        self.tags = ("a", f"t{i}")
        self.meta = {"score": i * 0.5, "owner": str(i)}


@dataclasses.dataclass
class Event:
    """A dataclass instance."""

    seq: int
    kind: str
    where: tuple
    extra: dict


@dataclasses.dataclass(slots=True)
class Point:
    """A slotted dataclass: no ``__dict__`` at all."""

    x: float
    y: float
    label: str


def build_rows(n_rows: int, records: bool) -> list[Any]:
    """About 7 objects per row (dict, 2 tuples, ints, float, str); with
    ``records``, a ``Record`` (about 10 objects) in every 10th row."""
    rows: list[Any] = []
    for i in range(n_rows):
        row = {"id": i, "name": str(i), "point": (i + 0.5, (i, -i))}
        if records and i % 10 == 0:
            row["record"] = Record(i)
        rows.append(row)
    return rows


def build_instances(n: int) -> list[Any]:
    """Regular instances, dataclasses and slotted dataclasses holding ints,
    strs, tuples and dicts: about 10 objects per instance."""
    items: list[Any] = []
    for i in range(n):
        if i % 3 == 0:
            items.append(Record(i))
        elif i % 3 == 1:
            items.append(Event(i, f"kind-{i % 7}", (i, str(i)), {"n": -i, "s": f"e{i}"}))
        else:
            items.append(Point(i * 0.25, -i * 0.25, f"p{i}"))
    return items


def materialize(data: Any) -> None:
    """Build every instance ``__dict__`` now: Pympler builds them as it goes
    (memtrim never does), so both tools size the same objects."""
    stack = [data]
    while stack:
        obj = stack.pop()
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (Record, Event)):
            obj.__dict__  # noqa: B018


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _objects_in(data: Any) -> int:
    from memtrim.objects import _kinds, sizing

    seen: set[int] = set()
    keep: list[Any] = []  # stand-ins for inline values are made on the fly
    stack = [data]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        keep.append(obj)
        stack.extend(sizing.describe(obj, sizing.Options(), 1)[1])
    return sum(type(obj) is not _kinds.InlineDict for obj in keep)  # stand-ins are not objects


SIZING_HEADER = [
    "| structure | objects | Pympler 1.1 s | memtrim s | ratio | same bytes |",
    "|---|---:|---:|---:|---:|---|",
]


def sizing_row(label: str, data: Any, repeat: int, same_expected: bool = True) -> str:
    from pympler import asizeof as pympler_asizeof

    n = _objects_in(data)  # before Pympler runs: it builds instance dicts
    t_mt, size_mt = best_of(repeat, lambda: memtrim.asizeof(data))
    t_py, size_py = best_of(repeat, lambda: pympler_asizeof.asizeof(data))
    if size_mt == size_py:
        same = f"yes ({size_mt})"
    elif same_expected:
        same = f"NO: {size_mt} vs {size_py}"
    else:
        same = f"no, by design: {size_mt} vs {size_py}"
    return f"| {label} | {n} | {t_py:.3f} | {t_mt:.3f} | {t_py / t_mt:.1f}x | {same} |"


def census_rows() -> tuple[list[str], float]:
    t_mt, result = best_of(1, memtrim.census)
    lines = [
        "| tool | seconds | objects found |",
        "|---|---:|---:|",
        f"| memtrim `census()` | {t_mt:.3f} | {result.total_count} |",
    ]
    del result
    try:
        from pympler import muppy, summary
    except ImportError:
        return lines, t_mt
    t_py, objs = best_of(1, muppy.get_objects)
    t_sum, _ = best_of(1, functools.partial(summary.summarize, objs))
    lines.append(
        f"| Pympler `muppy.get_objects` + `summarize` | {t_py + t_sum:.3f} | {len(objs)} |"
    )
    del objs
    return lines, t_mt


ASIZED_HEADER = [
    "| call | objects | Pympler 1.1 s | memtrim s | ratio | same size |",
    "|---|---:|---:|---:|---:|---|",
]


def asized_rows(label: str, data: Any, n: int) -> list[str]:
    """``asized(data, detail=d)`` for d = 0 and 1 next to Pympler's, one run each."""
    from pympler import asizeof as pympler_asizeof

    rows = []
    for detail in (0, 1):
        t_mt, tree_mt = best_of(1, lambda d=detail: memtrim.asized(data, detail=d))
        t_py, tree_py = best_of(1, lambda d=detail: pympler_asizeof.asized(data, detail=d))
        same = "yes" if tree_mt.size == tree_py.size else f"NO: {tree_mt.size} vs {tree_py.size}"
        rows.append(
            f"| `asized(detail={detail})`, {label} | {n} | {t_py:.3f} | {t_mt:.3f} "
            f"| {t_py / t_mt:.1f}x | {same} |"
        )
        del tree_mt, tree_py
    return rows


def footprint_row(label: str, data: Any, repeat: int) -> str:
    t_default, size = best_of(repeat, lambda: memtrim.asizeof(data))
    t_fp, fp = best_of(repeat, lambda: memtrim.asizeof(data, footprint=True))
    return f"| {label} | {t_default:.3f} | {t_fp:.3f} | {t_fp / t_default:.1f}x | {size} | {fp} |"


class Node:
    """A slotted linked-list node."""

    __slots__ = ("next", "value")

    def __init__(self, nxt: Any, value: Any) -> None:
        self.next = nxt
        self.value = value


def linked_list(n: int) -> Node | None:
    head = None
    for _ in range(n):
        head = Node(head, None)
    return head


def retained_rows(subjects: list[tuple[str, Any]], t_census: float) -> list[str]:
    lines = [
        "| object | `retained()` s | its `asizeof` s | `census()` of the heap s | retained bytes |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, obj in subjects:
        t_ret, result = best_of(1, lambda o=obj: memtrim.retained(o))
        t_size, _ = best_of(1, lambda o=obj: memtrim.asizeof(o))
        lines.append(
            f"| {label} | {t_ret:.3f} | {t_size:.3f} | {t_census:.3f} | {result.retained} |"
        )
    return lines


HOLDER: dict[str, Any] = {}


def why_rows(data: list[Any]) -> list[str]:
    target = Record(-1)
    data[-1]["record"] = target
    HOLDER["rows"] = data
    t_mt, chains = best_of(1, lambda: memtrim.why(target))
    del HOLDER["rows"]
    return [
        "| tool | seconds | chain |",
        "|---|---:|---|",
        f"| memtrim `why()` | {t_mt:.3f} | `{chains}` |",
    ]


def run(quick: bool = False) -> str:
    """The markdown section for docs/benchmarks.md, measured now."""
    memtrim.asizeof([])  # import memtrim's modules before timing anything
    n_rows = 30_000 if quick else 150_000
    n_inst = 20_000 if quick else 150_000
    n_nodes = 200_000 if quick else 1_000_000
    repeat = 1 if quick else 2
    rows, footprints = [], []
    data = build_rows(n_rows, records=False)
    n_data = _objects_in(data)
    rows.append(sizing_row(f"{n_rows} dicts of ints, str, float, tuples", data, repeat))
    footprints.append(footprint_row(f"{n_rows} dicts of ints, str, float, tuples", data, repeat))
    asized = asized_rows(f"{n_rows} dicts", data, n_data)
    del data
    data = build_instances(n_inst)
    footprints.append(footprint_row(f"{n_inst} instances, dicts never built", data, repeat))
    rows.append(
        sizing_row(
            f"{n_inst} instances (regular, dataclass, slotted dataclass), dicts never built",
            data,
            1,
            same_expected=False,
        )
    )
    materialize(data)
    rows.append(sizing_row(f"the same {n_inst} instances, dicts built", data, repeat))
    asized += asized_rows(f"{n_inst} instances, dicts built", data, _objects_in(data))
    del data
    head = linked_list(n_nodes)
    footprints.append(footprint_row(f"a {n_nodes}-node linked list (slots)", head, repeat))
    t_tree, tree = best_of(1, lambda h=head: memtrim.asized(h, detail=0))
    asized.append(
        f"| `asized(detail=0)`, a {n_nodes}-node linked list | {n_nodes + 1} | (recursion: "
        f"fails) | {t_tree:.3f} | | {tree.size} bytes |"
    )
    data = build_rows(n_rows, records=True)
    materialize(data)
    rows.append(sizing_row(f"{n_rows} dicts, a `Record` in every 10th", data, repeat))
    gc.collect()
    census, t_census = census_rows()
    retained = retained_rows(
        [(f"the {n_rows} dicts", data), (f"the {n_nodes}-node linked list", head)], t_census
    )
    del head, tree
    gc.collect()
    lines = [
        "## Objects: sizing, census, retained, why",
        "",
        f"Python {platform.python_version()} on {platform.machine()}; same process, best of "
        f"{repeat} runs for each `asizeof`, one run for the rest.",
        "",
        "### `asizeof`",
        "",
        *SIZING_HEADER,
        *rows,
        "",
        "Builtin containers, scalars and plain instances (their `__dict__`, inline values",
        "and `__slots__`) are walked in C. Pympler builds the `__dict__` of every instance",
        "it sizes; memtrim reads the inline values instead and charges their real storage,",
        "hence the different totals on the row where no dict was built yet.",
        "",
        "### `asized`",
        "",
        *ASIZED_HEADER,
        *asized,
        "",
        "Sizes come from the C walk; only the shown levels become Python nodes. At",
        "`detail=1` every child is named by its `repr` (as Pympler names it), and that",
        "`repr` is most of memtrim's time. Pympler's recursive walk cannot size the linked",
        "list at all.",
        "",
        "### `footprint=True` (allocator footprint) against the default figures",
        "",
        "| structure | default s | `footprint=True` s | ratio | default bytes | footprint bytes |",
        "|---|---:|---:|---:|---:|---:|",
        *footprints,
        "",
        "### `retained`",
        "",
        *retained,
        "",
        "Pympler has no retained size. `retained()` walks the object's `asizeof` set and",
        "reads reference counts: no scan of the rest of the heap.",
        "",
        f"### Census of the whole heap ({len(gc.get_objects())} GC-tracked objects)",
        "",
        *census,
        "",
        "### `why()`: chain to one object in that heap",
        "",
        *why_rows(data),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
