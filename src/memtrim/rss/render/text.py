"""The RSS breakdown as a terminal table (rich), fitting any width."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from memtrim.model.rss import RssBreakdown
from memtrim.model.units import human

_WHEN = {"now": "now", "peak": "at the peak", "at_exit": "at exit"}


def table(result: RssBreakdown, title: str | None = None) -> Table:
    """The parts, largest meaning first, with their share of the RSS."""
    when = _WHEN.get(result.when, result.when)
    table = Table(
        title=title or f"Resident memory {when}: {human(result.rss)}",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("part", overflow="fold")
    table.add_column("note", overflow="fold", style="dim")
    for label, size, share, note in result.rows():
        table.add_row(human(size), f"{share:.0%}", Text(label), Text(note))
    return table


def render(result: RssBreakdown, console: Console) -> None:
    """Print the table, then the facts and what could not be read."""
    console.print(table(result))
    for fact in result.facts:
        console.print(Text(f"  • {fact}"))
    for note in result.notes:
        console.print(Text(f"  ({note})", style="dim"))


def format_text(result: RssBreakdown, width: int = 100) -> str:
    """The same as plain text (no colour), ``width`` columns wide."""
    buffer = io.StringIO()
    render(result, Console(file=buffer, width=width, color_system=None, highlight=False))
    return buffer.getvalue()
