"""A census of the heap: every live object grouped by type, and diffs of two.

Objects come from ``gc.get_objects()`` plus every object the GC does not track
(ints, strings, tuples of atoms...) reachable from them through untracked
objects, as Pympler's ``muppy`` finds them. Bytes are ``sys.getsizeof``
figures (what ``muppy``'s summary reports), except that an instance whose
attributes live in 3.11+ inline values (no ``__dict__`` built) is charged that
storage too, as ``asizeof`` charges it (to its ``__dict__ (inline values)``).
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from memtrim.analysis import _layout

try:
    from memtrim.engine import _objects as _native
except ImportError:  # the extension was not compiled: pure-Python walk
    _native = None

_live: weakref.WeakSet[Census] = weakref.WeakSet()


def type_name(tp: type) -> str:
    """``module.QualName`` for user types, the bare name for builtins."""
    module = getattr(tp, "__module__", None)
    name = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", "?")
    return name if module in (None, "builtins") else f"{module}.{name}"


@dataclass(frozen=True)
class CensusRow:
    """One type in a census: how many objects, their bytes, the largest one."""

    type: str
    count: int
    bytes: int
    largest: int


@dataclass(frozen=True)
class GrowthRow:
    """How one type changed between two censuses."""

    type: str
    count: int
    count_delta: int
    bytes: int
    bytes_delta: int


class Census:
    """Every live object grouped by type; subtract two to see what grew."""

    __slots__ = ("__weakref__", "_table")

    def __init__(self, table: dict[type, tuple[int, int, int]]) -> None:
        self._table = table
        _live.add(self)

    def rows(self) -> list[CensusRow]:
        """Rows sorted by bytes (largest first), then type name."""
        rows = [CensusRow(type_name(tp), *values) for tp, values in self._table.items()]
        return sorted(rows, key=lambda r: (-r.bytes, r.type))

    @property
    def total_count(self) -> int:
        """Number of objects counted."""
        return sum(values[0] for values in self._table.values())

    @property
    def total_bytes(self) -> int:
        """Bytes of all objects counted."""
        return sum(values[1] for values in self._table.values())

    def get(self, tp: type) -> CensusRow | None:
        """The row of one type, or None if no object of it was alive."""
        values = self._table.get(tp)
        return CensusRow(type_name(tp), *values) if values else None

    def diff(self, before: Census) -> list[GrowthRow]:
        """What changed since ``before``: types whose count or bytes moved."""
        rows = []
        for tp in set(self._table) | set(before._table):
            now = self._table.get(tp, (0, 0, 0))
            then = before._table.get(tp, (0, 0, 0))
            if now[0] != then[0] or now[1] != then[1]:
                rows.append(
                    GrowthRow(type_name(tp), now[0], now[0] - then[0], now[1], now[1] - then[1])
                )
        return sorted(rows, key=lambda r: (-r.bytes_delta, -r.count_delta, r.type))

    def __sub__(self, other: Census) -> list[GrowthRow]:
        if not isinstance(other, Census):
            return NotImplemented
        return self.diff(other)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Plain data: ``{type name: {"count", "bytes", "largest"}}``."""
        return {
            r.type: {"count": r.count, "bytes": r.bytes, "largest": r.largest} for r in self.rows()
        }

    def __repr__(self) -> str:
        types, count, size = len(self._table), self.total_count, self.total_bytes
        return f"<Census {types} types, {count} objects, {size} bytes>"

    def __str__(self) -> str:
        from memtrim.reporters.objects import census_text

        return census_text(self.rows())

    def __rich__(self) -> Any:
        from memtrim.reporters.objects import census_table

        return census_table(self.rows())


def _bookkeeping(extra: Iterable[Any]) -> list[Any]:
    """memtrim's own objects, left out of every census."""
    skip: list[Any] = list(extra)
    skip += [_live.data, *_live.data]  # the WeakSet's own set and weakrefs
    for census in list(_live):
        skip += [census, census._table, *census._table.values()]
    return skip


def take(native: Any = "auto") -> Census:
    """Count every live object by type (native walker when available)."""
    native = _native if native == "auto" else native
    gc.collect()
    objs = gc.get_objects()
    skip = _bookkeeping([objs, sys._getframe()])
    skip.append(skip)
    table = native.census(objs, skip) if native is not None else _census_py(objs, skip)
    del objs, skip
    return Census(table)


def _sizeof(obj: Any) -> int:
    try:
        size = sys.getsizeof(obj)
    except Exception:
        size = _layout.tattr(type(obj), "__basicsize__")
    return size + _layout.inline_nbytes(obj)


def _census_py(objs: list[Any], skip: list[Any]) -> dict[type, tuple[int, int, int]]:
    """The same census as the native one, in Python."""
    seen = {id(o) for o in skip}
    rows: dict[type, list[int]] = {}

    def count(obj: Any) -> None:
        size = _sizeof(obj)
        row = rows.get(type(obj))
        if row is None:
            rows[type(obj)] = [1, size, size]
        else:
            row[0] += 1
            row[1] += size
            row[2] = max(row[2], size)

    for obj in objs:
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        count(obj)
        todo = [obj]
        while todo:
            for ref in gc.get_referents(todo.pop()):
                if not gc.is_tracked(ref) and id(ref) not in seen:
                    seen.add(id(ref))
                    count(ref)
                    todo.append(ref)
    return {tp: (row[0], row[1], row[2]) for tp, row in rows.items()}
