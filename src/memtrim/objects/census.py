"""A census of the heap: every live object grouped by type, and diffs of two.

Objects come from ``gc.get_objects()`` plus every object the GC does not track
(ints, strings, tuples of atoms...) reachable from them, or from the local
variables of any thread's frames, through untracked objects, as Pympler's
``muppy`` finds them (``muppy`` misses what only a running frame holds).
Bytes are ``sys.getsizeof`` figures (what ``muppy``'s summary reports, but a
``__sizeof__`` written in Python is never called: ``sizing.getsizeof``),
except that an instance whose attributes live in 3.11+ inline values (no
``__dict__`` built) is charged that storage too, as ``asizeof`` charges it
(to its ``__dict__ (inline values)``).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import types
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from memtrim.objects import _layout

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
        from memtrim.objects.render.text import census_text

        return census_text(self.rows())

    def __rich__(self) -> Any:
        from memtrim.objects.render.text import census_table

        return census_table(self.rows())


def _bookkeeping(extra: Iterable[Any]) -> list[Any]:
    """memtrim's own objects, left out of every census."""
    from memtrim.objects import _kinds

    skip: list[Any] = list(extra)
    skip += [_live.data, *_live.data]  # the WeakSet's own set and weakrefs
    cache = _kinds._cache.data  # the handler cache grows as new types are sized
    skip += [cache, *cache, *cache.values()]
    for census in list(_live):
        skip += [census, census._table, *census._table.values()]
    return skip


def own_globals() -> list[dict]:
    """The globals of memtrim's own modules: frames running them hold memtrim's
    bookkeeping (left out of a census) and are no roots or holders for
    ``why()`` and ``retained()``."""
    found = []
    for name, module in list(sys.modules.items()):
        if (name == "memtrim" or name.startswith("memtrim.")) and type(module) is types.ModuleType:
            namespace = module.__dict__
            if type(namespace) is dict:
                found.append(namespace)
    return found


def take(native: Any = "auto") -> Census:
    """Count every live object by type (native walker when available)."""
    native = _native if native == "auto" else native
    gc.collect()
    objs = gc.get_objects()
    skip = _bookkeeping([objs, sys._getframe()])
    skip.append(skip)
    own = own_globals()
    census = native.census if native is not None else _census_py
    table = census(objs, skip, own)
    del objs, skip, own
    return Census(table)


def _sizeof(obj: Any) -> int:
    from memtrim.objects.sizing import getsizeof

    return getsizeof(obj) + _layout.inline_nbytes(obj)


def frame_locals(own: list[dict]) -> list[Any]:
    """The local variables of every frame of every thread, except frames
    running with globals in ``own`` (the Python fallback: it creates frame
    objects, which the native walks do not)."""
    values: list[Any] = []
    skip = {id(ns) for ns in own}
    for frame in sys._current_frames().values():
        while frame is not None:
            if id(frame.f_globals) not in skip:
                with contextlib.suppress(Exception):
                    values += list(frame.f_locals.values())
            frame = frame.f_back
    return values


def _census_py(
    objs: list[Any], skip: list[Any], own: list[dict]
) -> dict[type, tuple[int, int, int]]:
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

    def untracked_from(todo: list[Any]) -> None:
        while todo:
            for ref in gc.get_referents(todo.pop()):
                if not gc.is_tracked(ref) and id(ref) not in seen:
                    seen.add(id(ref))
                    count(ref)
                    todo.append(ref)

    for obj in objs:
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        count(obj)
        untracked_from([obj])
    seen.add(id(seen))
    for value in frame_locals(own):  # a running frame does not report its locals
        if not gc.is_tracked(value) and id(value) not in seen:
            seen.add(id(value))
            count(value)
            untracked_from([value])
    return {tp: (row[0], row[1], row[2]) for tp, row in rows.items()}
