"""Benchmark: memtrim's object sizing, census and why() against Pympler.

Run alone with ``PYTHONPATH=src python benchmarks/bench_objects.py`` (add
``--quick`` for a smaller heap); ``benchmarks/run.py`` imports :func:`run`.
"""

from __future__ import annotations

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


def build(n_rows: int, records: bool) -> list[Any]:
    """About 7 objects per row (dict, 2 tuples, ints, float, str); with
    ``records``, an instance (plus its name string) in every 10th row."""
    rows: list[Any] = []
    for i in range(n_rows):
        row = {"id": i, "name": str(i), "point": (i + 0.5, (i, -i))}
        if records and i % 10 == 0:
            row["record"] = Record(i)
        rows.append(row)
    return rows


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _objects_in(data: Any) -> int:
    from memtrim.analysis import sizing

    seen: set[int] = set()
    stack = [data]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        stack.extend(sizing.describe(obj, sizing.Options(), 1)[1])
    return len(seen)


SIZING_HEADER = [
    "| structure | objects | Pympler 1.1 s | memtrim s | ratio | same bytes |",
    "|---|---:|---:|---:|---:|---|",
]


def sizing_row(label: str, data: Any) -> str:
    from pympler import asizeof as pympler_asizeof

    for value in data:  # Pympler materializes instance dicts; do it up front so both
        record = value.get("record")  # size the same objects
        if record is not None:
            record.__dict__  # noqa: B018
    gc.collect()
    t_mt, size_mt = timed(lambda: memtrim.asizeof(data))
    t_py, size_py = timed(lambda: pympler_asizeof.asizeof(data))
    same = f"yes ({size_mt})" if size_mt == size_py else f"NO: {size_mt} vs {size_py}"
    n = _objects_in(data)
    return f"| {label} | {n} | {t_py:.3f} | {t_mt:.3f} | {t_py / t_mt:.1f}x | {same} |"


def census_rows() -> list[str]:
    t_mt, result = timed(memtrim.census)
    lines = [
        "| tool | seconds | objects found |",
        "|---|---:|---:|",
        f"| memtrim `census()` | {t_mt:.3f} | {result.total_count} |",
    ]
    try:
        from pympler import muppy, summary
    except ImportError:
        return lines
    t_py, objs = timed(muppy.get_objects)
    t_sum, _ = timed(functools.partial(summary.summarize, objs))
    lines.append(
        f"| Pympler `muppy.get_objects` + `summarize` | {t_py + t_sum:.3f} | {len(objs)} |"
    )
    del objs
    return lines


HOLDER: dict[str, Any] = {}


def why_rows(data: list[Any]) -> list[str]:
    target = Record(-1)
    data[-1]["record"] = target
    HOLDER["rows"] = data
    t_mt, chains = timed(lambda: memtrim.why(target))
    del HOLDER["rows"]
    return [
        "| tool | seconds | chain |",
        "|---|---:|---|",
        f"| memtrim `why()` | {t_mt:.3f} | `{chains}` |",
    ]


def run(quick: bool = False) -> str:
    """The markdown section for docs/benchmarks.md, measured now."""
    n_rows = 30_000 if quick else 200_000
    plain = build(n_rows, records=False)
    rows = [sizing_row(f"{n_rows} dicts of ints, str, float, tuples", plain)]
    del plain
    data = build(n_rows, records=True)
    rows.append(sizing_row("the same, an instance in every 10th dict", data))
    gc.collect()
    lines = [
        "## Objects: sizing, census, why",
        "",
        f"Python {platform.python_version()} on {platform.machine()}; one run each, same process.",
        "",
        "### `asizeof`",
        "",
        *SIZING_HEADER,
        *rows,
        "",
        "Builtin containers and scalars are walked in C; every other object (here the",
        "instances) goes through the Python rules, which costs about 20 us per instance.",
        "",
        f"### Census of the whole heap ({len(gc.get_objects())} GC-tracked objects)",
        "",
        *census_rows(),
        "",
        "### `why()`: chain to one object in that heap",
        "",
        *why_rows(data),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
