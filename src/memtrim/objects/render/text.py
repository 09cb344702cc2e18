"""Text and rich rendering of sizing trees, censuses, growth and why-chains.

Everything here takes plain data (dataclasses with str/int fields) and never
imports the native engine, so it can be tested with hand-made records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

INDENT = "    "
SIZE_FORMAT = "%(name)s size=%(size)d flat=%(flat)d"


class Sized(Protocol):
    name: str
    size: int
    flat: int
    refs: Sequence[Any]


def asized_text(
    node: Sized,
    format: str = SIZE_FORMAT,
    depth: int = -1,
    order_by: str = "size",
    indent: str = "",
) -> str:
    """Pympler's ``Asized.format`` layout: ``name size=N flat=M``, children
    indented four spaces, largest first (``order_by`` 'size' or 'flat'; 'name'
    sorts alphabetically)."""
    if order_by not in ("size", "flat", "name"):
        raise ValueError(f"order_by must be 'size', 'flat' or 'name', not {order_by!r}")
    lines: list[str] = []
    stack: list[tuple[Sized, str, int]] = [(node, indent, depth)]
    while stack:  # explicit stack: deep trees never hit the recursion limit
        current, pad, left = stack.pop()
        lines.append(
            pad + format % {"name": current.name, "size": current.size, "flat": current.flat}
        )
        if left and current.refs:
            refs = sorted(
                current.refs, key=lambda r: getattr(r, order_by), reverse=order_by != "name"
            )
            stack.extend((ref, pad + INDENT, left - 1) for ref in reversed(refs))
    return "\n".join(lines)


def _signed(n: int) -> str:
    return f"+{n}" if n > 0 else str(n)


def census_lines(rows: Iterable[Any], limit: int | None = 25) -> list[tuple[str, ...]]:
    """Census rows as display strings: type, count, bytes, largest."""
    out = []
    for row in list(rows)[:limit]:
        out.append((row.type, str(row.count), str(row.bytes), str(row.largest)))
    return out


def _plain_table(header: tuple[str, ...], lines: list[tuple[str, ...]]) -> str:
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(header)
    ]
    fmt = [f"{{:<{widths[0]}}}", *(f"{{:>{w}}}" for w in widths[1:])]
    rows = [header, *lines]
    return "\n".join(
        "  ".join(f.format(cell) for f, cell in zip(fmt, row, strict=True)) for row in rows
    )


CENSUS_HEADER = ("type", "count", "bytes", "largest")
GROWTH_HEADER = ("type", "count", "+count", "bytes", "+bytes")


def census_text(rows: Iterable[Any], limit: int | None = 25) -> str:
    """A plain-text census table (largest types first)."""
    return _plain_table(CENSUS_HEADER, census_lines(rows, limit))


def growth_lines(rows: Iterable[Any], limit: int | None = 25) -> list[tuple[str, ...]]:
    """Growth rows as display strings."""
    out = []
    for row in list(rows)[:limit]:
        out.append(
            (
                row.type,
                str(row.count),
                _signed(row.count_delta),
                str(row.bytes),
                _signed(row.bytes_delta),
            )
        )
    return out


def growth_text(rows: Iterable[Any], limit: int | None = 25) -> str:
    """What grew, like objgraph's ``show_growth`` but with bytes."""
    return _plain_table(GROWTH_HEADER, growth_lines(rows, limit))


def _rich_table(title: str, header: tuple[str, ...], lines: list[tuple[str, ...]]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for line in lines:
        table.add_row(*line)
    return table


def census_table(rows: Iterable[Any], limit: int | None = 25) -> Any:
    """A rich Table of a census."""
    return _rich_table("Live objects by type", CENSUS_HEADER, census_lines(rows, limit))


def growth_table(rows: Iterable[Any], limit: int | None = 25) -> Any:
    """A rich Table of growth between two censuses."""
    return _rich_table("Growth by type", GROWTH_HEADER, growth_lines(rows, limit))


def chain_text(chain: Any) -> str:
    """``app.CACHE -> dict['users'] -> list[3] -> <User object>``."""
    parts = [chain.root.name]
    parts += [f"{tp}{acc}" for tp, acc in chain.steps]
    parts.append(chain.target)
    return " -> ".join(parts)


def chains_text(chains: Sequence[Any]) -> str:
    """All chains, one per line, or a note when nothing holds the object."""
    if not chains:
        return (
            "no reference chain from a root (module global, class attribute, frame local,"
            " thread) was found"
        )
    return "\n".join(chain_text(c) for c in chains)


def _dot_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def chains_dot(chains: Sequence[Any]) -> str:
    """Graphviz DOT source for the chains (render with ``dot -Tsvg``)."""
    lines = ["digraph why {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];"]
    for c, chain in enumerate(chains):
        names = [chain.root.name, *(tp for tp, _ in chain.steps), chain.target]
        for i, name in enumerate(names):
            lines.append(f'  c{c}n{i} [label="{_dot_label(name)}"];')
            if i:  # the accessor is written on the step that holds the next object
                label = chain.steps[i - 2][1].strip() if i >= 2 else ""
                lines.append(f'  c{c}n{i - 1} -> c{c}n{i} [label="{_dot_label(label)}"];')
    lines.append("}")
    return "\n".join(lines)
