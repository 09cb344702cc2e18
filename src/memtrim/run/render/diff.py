"""Two runs compared, as text (rich tables) and as JSON data, from plain data."""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from memtrim.model.units import human
from memtrim.run.capture import VIEW_LABELS
from memtrim.run.diff import Change, Side, ViewDiff

FORMAT = "memtrim-diff"
VERSION = 1


def _program(command: str) -> str:
    """The program a command ran, without its directory: ``prog.py`` of ``a/prog.py x``."""
    first = command.split(" ", 1)[0] if command else ""
    return first.rsplit("/", 1)[-1]


def _signed(n: int) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "") + human(abs(n))


def _percent(change: int, base: int) -> str:
    return f"{100 * change / base:+.1f} %" if base else "new"


def _where(change: Change) -> str:
    site = change.where[-1]
    return f"{site.path}:{site.line} ({site.qualname})"


def render_diff(
    diff: list[ViewDiff],
    base: Side,
    new: Side,
    stream: IO[str],
    top: int = 10,
    width: int | None = None,
) -> None:
    """The totals, then per view the lines (and stacks) that changed most."""
    console = Console(file=stream, width=width, highlight=False)
    console.print(Text(f"base: {base.label}  ({base.command})"))
    console.print(Text(f"new:  {new.label}  ({new.command})"))
    if _program(base.command) != _program(new.command):
        console.print(Text("note: the two runs ran different programs; lines are matched anyway"))
    if not (base.complete and new.complete):
        console.print(
            Text("note: a JSON report lists only its top lines: smaller ones are not compared")
        )
    totals = Table(title="Totals", title_justify="left")
    for name in ("view", "base", "new", "change"):
        totals.add_column(name, justify="left" if name == "view" else "right")
    for part in diff:
        totals.add_row(
            VIEW_LABELS.get(part.view, part.view),
            human(part.base),
            human(part.new),
            f"{_signed(part.change)} ({_percent(part.change, part.base)})",
        )
    console.print(totals)
    for part in diff:
        if not part.lines:
            continue
        table = Table(
            title=f"{VIEW_LABELS.get(part.view, part.view)}: the lines that changed most",
            title_justify="left",
        )
        table.add_column("change", justify="right", no_wrap=True)
        table.add_column("base", justify="right", no_wrap=True)
        table.add_column("new", justify="right", no_wrap=True)
        table.add_column("line, source", overflow="fold", ratio=1)
        for change in part.lines[:top]:
            where = Text(_where(change))
            source = change.where[-1].source
            if source:
                where.append("\n" + source[:120], style="dim")
            table.add_row(_signed(change.change), human(change.base), human(change.new), where)
        console.print(table)
        stacks = [s for s in part.stacks[: max(top // 3, 1)] if len(s.where) > 1]
        for change in stacks:
            path = " → ".join(f"{s.qualname}:{s.line}" for s in change.where[-4:])
            console.print(Text(f"  stack {_signed(change.change)}: {path}"))


def _site(site: Any) -> dict[str, Any]:
    return {
        "path": site.path,
        "function": site.qualname,
        "lineno": site.line,
        "source": site.source,
    }


def diff_to_dict(
    diff: list[ViewDiff], base: Side, new: Side, failed: list[str], limit: int = 200
) -> dict[str, Any]:
    """The documented JSON shape (byte values integers, largest change first)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "base": {"label": base.label, "command": base.command, "complete": base.complete},
        "new": {"label": new.label, "command": new.command, "complete": new.complete},
        "failed": failed,
        "views": {
            part.view: {
                "base": part.base,
                "new": part.new,
                "change": part.change,
                "lines": [
                    {**_site(c.where[-1]), "base": c.base, "new": c.new, "change": c.change}
                    for c in part.lines[:limit]
                ],
                "lines_changed": len(part.lines),
                "stacks": [
                    {
                        "stack": [_site(s) for s in c.where],
                        "base": c.base,
                        "new": c.new,
                        "change": c.change,
                    }
                    for c in part.stacks[:limit]
                ],
            }
            for part in diff
        },
    }
