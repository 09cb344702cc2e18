"""The line table as memory_profiler prints it, with memtrim's Peak column.

Layout kept from memory_profiler so eyes and scripts trained on it still work:
``Filename:`` line, a header, ``=`` underline, one row per source line, every
figure as ``<number> MiB``. The new ``Peak`` column comes after ``Increment``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TextIO

from memtrim.lines.model import FunctionTable, LineRow
from memtrim.model.units import MIB
from memtrim.model.units import mib_column as format_mib

__all__ = ["HEADER", "MIB", "format_mib", "format_row", "format_table", "write_tables"]
_TEMPLATE = "{0:>6} {1:>12} {2:>12} {3:>12}  {4:>10}   {5}"
HEADER = _TEMPLATE.format(
    "Line #", "Mem usage", "Increment", "Peak", "Occurrences", "Line Contents"
)


def format_row(row: LineRow, precision: int) -> str:
    """One table row; lines that never ran show only their number and source."""
    if not row.ran:
        return _TEMPLATE.format(row.lineno, "", "", "", "", row.source).rstrip() + "\n"
    assert row.mem_usage is not None and row.increment is not None
    assert row.peak_increment is not None
    return (
        _TEMPLATE.format(
            row.lineno,
            format_mib(row.mem_usage, precision),
            format_mib(row.increment, precision),
            format_mib(row.peak_increment, precision),
            row.occurrences,
            row.source,
        ).rstrip()
        + "\n"
    )


def format_table(table: FunctionTable, precision: int = 3) -> str:
    """The whole table of one function, as text."""
    parts = [f"Filename: {table.filename}\n\n", HEADER + "\n", "=" * len(HEADER) + "\n"]
    parts.extend(format_row(row, precision) for row in table.lines)
    parts.append("\n\n")
    return "".join(parts)


def write_tables(tables: Iterable[FunctionTable], stream: TextIO, precision: int = 3) -> None:
    """Write every table that has at least one line that ran."""
    for table in tables:
        if table.ran:
            stream.write(format_table(table, precision))
    stream.flush()
