"""Line tables as plain data: what the line profiler measured, per source line.

The engine reports, per line that ran, ``(line, occurrences, increment, peak,
level_at_end)`` in bytes. This module turns those rows into
:class:`FunctionTable` objects that reporters render; it knows nothing about
the engine.

``mem_usage`` is the process's memory after the line ran: the resident set
size read at the start of the outermost profiled call (at most every 100 ms)
plus the exact change of the heap since that reading. The engine reports it
in bytes, ready to show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


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

    @property
    def ran(self) -> bool:
        """Did any line of the function run?"""
        return any(row.ran for row in self.lines)


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
    return FunctionTable(function, filename, tuple(rows))
