"""Advice as a rich table: kind, where, now -> after, saving, fix; the longer
text (the fix in full, the caveats, the holder chain) wrapped under it.

Built from plain :class:`~memtrim.model.advice.Advice` records only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from memtrim.model.advice import Advice
from memtrim.model.units import human


def _where(item: Advice, cwd: str | None) -> str:
    if not item.filename:
        return item.holder[0] if item.holder else "(line not known)"
    path = item.filename
    if cwd and not path.startswith("<"):
        try:
            rel = os.path.relpath(path, cwd)
            path = rel if not rel.startswith("..") else path
        except ValueError:
            pass
    return f"{path}:{item.lineno}"


def _detail(item: Advice, index: int, cwd: str | None) -> Text:
    text = Text()
    text.append(f"[{index}] {item.kind}", style="bold")
    text.append(f" at {_where(item, cwd)}")
    if item.source:
        text.append(f": {item.source}", style="cyan")
    text.append("\n")
    text.append(f"    {item.count:,} x {item.type}: {human(item.bytes)} -> {human(item.after)}")
    measured = {
        "all": "measured on all of them",
        "sample": "measured on a sample",
        "computed": "computed",
    }[item.measured]
    if item.measured == "sample" and item.error:
        measured += f" (within {item.error:.1%})"
    text.append(f", {measured}; {item.confidence}\n")
    text.append(f"    fix: {item.fix}\n", style="green")
    for caveat in item.caveats:
        text.append(f"    - {caveat}\n")
    if item.holder:
        text.append("    held by: " + " -> ".join(item.holder) + "\n", style="dim")
    return text


def advice_renderable(
    advice: Iterable[Advice], cwd: str | None = None, title: str = "Advice"
) -> RenderableType:
    """The table and the details under it."""
    items = list(advice)
    if not items:
        return Text(f"{title}: nothing to change above the threshold.")
    title = Text(title)
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("where", overflow="fold", ratio=3)
    table.add_column("now -> after", no_wrap=True)
    table.add_column("saving", justify="right", no_wrap=True)
    table.add_column("fix", overflow="fold", ratio=4)
    for i, item in enumerate(items, 1):
        short = item.fix if len(item.fix) <= 60 else item.fix[:57] + "..."
        table.add_row(  # Text, not str: the program's text is never read as markup
            Text(str(i)),
            Text(item.kind),
            Text(_where(item, cwd)),
            Text(f"{human(item.bytes)} -> {human(item.after)}"),
            Text(human(item.saving)),
            Text(short),
        )
    details = [_detail(item, i, cwd) for i, item in enumerate(items, 1)]
    return Group(table, *details)


def advice_text(advice: Iterable[Advice], width: int = 100, cwd: str | None = None) -> str:
    """The advice as plain text of ``width`` columns."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, highlight=False)
    console.print(advice_renderable(advice, cwd))
    return buffer.getvalue().rstrip("\n")


def print_advice(
    advice: Iterable[Advice], file: IO[str], width: int | None = None, cwd: str | None = None
) -> None:
    """Print to ``file`` (a terminal gets colour, its own width)."""
    console = Console(file=file, width=width, highlight=False)
    console.print(advice_renderable(advice, cwd))


class AdviceList(list):
    """What :func:`memtrim.advise` returns: a list of :class:`Advice`, largest
    saving first, that prints as a table (``print(a)``, ``rich.print(a)``)."""

    def __str__(self) -> str:
        return advice_text(self)

    def __rich__(self) -> RenderableType:
        return advice_renderable(self)

    def to_dicts(self) -> list[dict[str, Any]]:
        """The JSON records."""
        return [item.to_dict() for item in self]
