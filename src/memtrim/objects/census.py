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

A census is saved and opened with :mod:`memtrim.model.files` (kind
``census``): a census loaded back knows its types by name only.
"""

from __future__ import annotations

import gc
import json
import sys
import types
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from memtrim.model import files
from memtrim.model.findings import Amount, Finding

_live: weakref.WeakSet[Census] = weakref.WeakSet()


def type_name(tp: type | str) -> str:
    """``module.QualName`` for user types, the bare name for builtins (a name
    is its own: the types of a census loaded from a file)."""
    if isinstance(tp, str):
        return tp
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
    """Every live object grouped by type; subtract two to see what grew.

    The table's keys are types, or type names in a census loaded from a file.
    """

    FILE_KIND = "census"

    __slots__ = ("__weakref__", "_table")

    def __init__(self, table: dict[type | str, tuple[int, int, int]]) -> None:
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

    def get(self, tp: type | str) -> CensusRow | None:
        """The row of one type, or None if no object of it was alive."""
        values = self._table.get(tp)
        if values is None and not isinstance(tp, str) and self._by_name():
            values = self._table.get(type_name(tp))
        return CensusRow(type_name(tp), *values) if values else None

    def _by_name(self) -> bool:
        return any(isinstance(tp, str) for tp in self._table)

    def _named(self) -> dict[type | str, tuple[int, int, int]]:
        """The table keyed by type names (types of the same name added up)."""
        out: dict[type | str, tuple[int, int, int]] = {}
        for tp, (count, size, largest) in self._table.items():
            name = type_name(tp)
            seen = out.get(name, (0, 0, 0))
            out[name] = (seen[0] + count, seen[1] + size, max(seen[2], largest))
        return out

    def diff(self, before: Census) -> list[GrowthRow]:
        """What changed since ``before``: types whose count or bytes moved.

        Types are matched by name when either census was loaded from a file.
        """
        ours, theirs = self._table, before._table
        if self._by_name() or before._by_name():
            ours, theirs = self._named(), before._named()
        rows = []
        for tp in set(ours) | set(theirs):
            now = ours.get(tp, (0, 0, 0))
            then = theirs.get(tp, (0, 0, 0))
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

    def findings(self) -> list[Finding]:
        """One finding per type (``type``, named by the type, metric ``live``:
        its objects' bytes and number when the census was taken), largest
        first, then the ``total``."""
        out = [
            Finding("type", None, "live", Amount(row.bytes, row.count), name=row.type)
            for row in self.rows()
        ]
        out.append(Finding("total", None, "live", Amount(self.total_bytes, self.total_count)))
        return out

    def save(self, path: str) -> None:
        """Write the census to a memtrim file (:func:`memtrim.model.load` opens it)."""
        files.dump(self, path)

    def __repr__(self) -> str:
        types, count, size = len(self._table), self.total_count, self.total_bytes
        return f"<Census {types} types, {count} objects, {size} bytes>"

    def __str__(self) -> str:
        from memtrim.objects.render.text import census_text

        return census_text(self.rows())

    def __rich__(self) -> Any:
        from memtrim.objects.render.text import census_table

        return census_table(self.rows())


def growth_findings(rows: Iterable[GrowthRow]) -> list[Finding]:
    """The rows of :meth:`Census.diff` as findings: per type, metric
    ``increment``, the change of its bytes and number of objects."""
    return [
        Finding("type", None, "increment", Amount(r.bytes_delta, r.count_delta), name=r.type)
        for r in rows
    ]


def encode_body(census: Census) -> bytes:
    """The body of a census file: ``{"types": [[name, count, bytes, largest]...]}``."""
    rows = [[r.type, r.count, r.bytes, r.largest] for r in census.rows()]
    return json.dumps({"types": rows}, separators=(",", ":")).encode()


def decode_body(body: bytes, version: int, name: str = "census") -> Census:
    """A census (its types by name) from the body of its file."""
    try:
        table: dict[type | str, tuple[int, int, int]] = {}
        for row in json.loads(body)["types"]:
            type_, count, size, largest = row
            table[str(type_)] = (int(count), int(size), int(largest))
    except (KeyError, TypeError, ValueError) as exc:
        raise files.FormatError(f"{name} is corrupt ({exc})") from None
    return Census(table)


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


def take() -> Census:
    """Count every live object by type (the native walk, ``walks.census``)."""
    # imported here: a census saved to a file opens without the extension
    from memtrim.engine import walks

    gc.collect()
    objs = gc.get_objects()
    skip = _bookkeeping([objs, sys._getframe()])
    skip.append(skip)
    own = own_globals()
    table = walks.census(objs, skip, own)
    del objs, skip, own
    return Census(table)
