"""Line tables as plain data: what the line profiler measured, per source line.

The engine reports, per line that ran, ``(line, occurrences, increment, peak,
level_at_end)`` in bytes. This module turns those rows into
:class:`FunctionTable` objects that reporters render; it knows nothing about
the engine.

``mem_usage`` is the process's memory after the line ran: the resident set
size read at the start of the outermost profiled call (at most every 100 ms)
plus the exact change of the heap since that reading. The engine reports it
in bytes, ready to show.

A :class:`LineTable` holds the tables of one profiling session: it lists its
:class:`~memtrim.model.Finding` objects and is saved and opened with
:mod:`memtrim.model.files` (kind ``lines``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memtrim.model import files
from memtrim.model.findings import Amount, Finding, Site

FILE_KIND = "lines"
FORMAT_VERSION = files.KINDS[FILE_KIND].version


@dataclass(frozen=True, slots=True)
class LineRow:
    """One source line of a profiled function. Figures are ``None`` if it never ran."""

    lineno: int
    source: str
    occurrences: int = 0
    mem_usage: int | None = None
    increment: int | None = None
    peak_increment: int | None = None

    @property
    def ran(self) -> bool:
        """Did the line run at least once?"""
        return self.occurrences > 0


@dataclass(frozen=True, slots=True)
class FunctionTable:
    """The line table of one profiled function (nested code included)."""

    function: str
    filename: str
    lines: tuple[LineRow, ...] = field(default_factory=tuple)
    first_line: int | None = None  # the function's first line (its decorators' if any)

    @property
    def ran(self) -> bool:
        """Did any line of the function run?"""
        return any(row.ran for row in self.lines)

    def site(self, row: LineRow, root: str | None = None) -> Site:
        """The :class:`~memtrim.model.Site` of one of the table's lines."""
        return Site.at(self.filename, self.function, row.lineno, self.first_line, row.source, root)

    def findings(self, root: str | None = None) -> list[Finding]:
        """Per line that ran: its ``increment`` and its ``peak`` (the highest
        the heap rose above its level before the line), exact, in bytes (no
        block counts); paths relative to ``root``."""
        out = []
        for row in self.lines:
            if row.ran:
                assert row.increment is not None and row.peak_increment is not None
                site = self.site(row, root)
                out.append(Finding("line", site, "increment", Amount(row.increment)))
                out.append(Finding("line", site, "peak", Amount(row.peak_increment)))
        return out


@dataclass(frozen=True, slots=True)
class LineTable:
    """The line tables of a profiling session, and the directory (``root``)
    their paths are told relative to (the working directory by default)."""

    FILE_KIND = FILE_KIND

    tables: tuple[FunctionTable, ...] = ()
    root: str = ""

    @classmethod
    def of(cls, tables: Iterable[FunctionTable], root: str | None = None) -> LineTable:
        """The result of ``tables`` (``root``: the working directory if not given)."""
        return cls(tuple(tables), os.getcwd() if root is None else root)

    def findings(self) -> list[Finding]:
        """The findings of every table, in order."""
        return [f for table in self.tables for f in table.findings(self.root or None)]

    def save(self, path: str) -> None:
        """Write the tables to a memtrim file (:func:`memtrim.model.load` opens it)."""
        files.dump(self, path)

    def to_dict(self) -> dict[str, Any]:
        """Plain data: every line, run or not (the body of the file)."""
        return {
            "root": self.root,
            "tables": [
                {
                    "function": t.function,
                    "filename": t.filename,
                    "first_line": t.first_line,
                    "lines": [list(_fields(r)) for r in t.lines],
                }
                for t in self.tables
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineTable:
        """The inverse of :meth:`to_dict`."""
        return cls(
            tuple(
                FunctionTable(
                    str(t["function"]),
                    str(t["filename"]),
                    tuple(LineRow(*_row(r)) for r in t["lines"]),
                    None if t.get("first_line") is None else int(t["first_line"]),
                )
                for t in data["tables"]
            ),
            str(data.get("root") or ""),
        )


def _fields(r: LineRow) -> tuple[Any, ...]:
    return (r.lineno, r.source, r.occurrences, r.mem_usage, r.increment, r.peak_increment)


def _row(row: list[Any]) -> tuple[Any, ...]:
    lineno, source, occurrences, *figures = row
    if len(figures) != 3:
        raise ValueError("a line is [lineno, source, occurrences, mem_usage, increment, peak]")
    numbers = tuple(None if v is None else int(v) for v in figures)
    return (int(lineno), str(source), int(occurrences), *numbers)


def encode_body(table: LineTable) -> bytes:
    """The body of a line-table file (before compression)."""
    return json.dumps(table.to_dict(), separators=(",", ":")).encode()


def decode_body(body: bytes, version: int, name: str = "line table") -> LineTable:
    """A :class:`LineTable` from the body of its file."""
    try:
        return LineTable.from_dict(json.loads(body))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise files.FormatError(f"{name} is corrupt ({exc})") from None


def build_table(
    function: str,
    filename: str,
    stats: Iterable[tuple[int, int, int, int, int]],
    source: Sequence[str],
    first_line: int,
    baseline: int = 0,
) -> FunctionTable:
    """Merge engine rows with the function's source lines.

    ``source`` holds the function's lines starting at ``first_line`` (it may be
    empty when the source is unknown); ``baseline`` is added to each line's
    memory figure (the engine's figures need none).
    """
    measured = {row[0]: row for row in stats}
    numbers = set(measured)
    numbers.update(range(first_line, first_line + len(source)))
    rows = []
    for lineno in sorted(numbers):
        offset = lineno - first_line
        text = source[offset].rstrip("\r\n") if 0 <= offset < len(source) else ""
        hit = measured.get(lineno)
        if hit is None or hit[1] == 0:
            rows.append(LineRow(lineno, text))
            continue
        _, occurrences, increment, peak, level = hit
        rows.append(LineRow(lineno, text, occurrences, baseline + level, increment, peak))
    return FunctionTable(function, filename, tuple(rows), first_line)
