"""The HTML report of a capture: one self-contained page (``memtrim run --html``).

The page is built from plain data computed here: per view (``peak``,
``at_exit``: still allocated at exit, ``allocated``), the top lines with
their source, the files with their lines, and the call tree of ``stacks`` pruned to its heaviest
:data:`TREE_NODES` nodes (what a smaller node holds is counted in its caller),
plus the timeline decimated to :data:`TIMELINE_POINTS` points. That data
is embedded as JSON in a ``<script type="application/json">`` element (``<``,
``>``, ``&``, U+2028, U+2029 and lone surrogates escaped, so nothing from the
profiled program can end the element) and drawn by the inline script of
``templates/report.js``; every string from the program reaches the page as
text (``textContent``), never as markup. The page loads nothing: no network,
works from ``file://``, and its Content-Security-Policy only lets its own
script run.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import html
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from operator import attrgetter
from typing import Any

from memtrim.model.rss import LABELS as RSS_LABELS
from memtrim.model.units import script_json
from memtrim.run.capture import VIEW_LABELS, VIEWS, Capture, Counts, decimate, unattributed

SITES_PER_VIEW = 200  # top lines embedded per view
FILES_PER_VIEW = 200  # files embedded per view
LINES_PER_FILE = 100  # lines embedded per file and view
TREE_NODES = 12_000  # call-tree nodes embedded per view
TIMELINE_POINTS = 1_500
SOURCE_CHARS = 240  # longest source line shown
DATA_VERSION = 2

__all__ = ["render_html", "report_data", "script_json"]
_PLACEHOLDER = re.compile(r"__MEMTRIM_([A-Z]+)__")


# ------------------------------------------------------------------ tables


@dataclass
class _Tables:
    """Strings and frames shared by all views: each sent to the page once."""

    capture: Capture
    strings: list[str] = field(default_factory=list)
    frames: list[list[int]] = field(default_factory=list)  # [file string, function string, line]
    _strings: dict[str, int] = field(default_factory=dict)
    _frames: dict[int, int] = field(default_factory=dict)

    def string(self, text: str) -> int:
        """Index of ``text`` in the string table."""
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self.strings)
            self.strings.append(text)
        return index

    def frame(self, index: int) -> int:
        """Index in the page's frame table of ``capture.frames[index]``."""
        out = self._frames.get(index)
        if out is None:
            frame = self.capture.frames[index]
            out = self._frames[index] = len(self.frames)
            self.frames.append(
                [self.string(frame.filename), self.string(frame.function), frame.lineno]
            )
        return out

    def sources(self) -> dict[str, dict[str, str]]:
        """Source text of the frames sent, by file string index then line."""
        out: dict[str, dict[str, str]] = {}
        for file_index, _function, lineno in self.frames:
            text = self.capture.sources.get(self.strings[file_index], {}).get(lineno)
            if text:
                out.setdefault(str(file_index), {})[str(lineno)] = text[:SOURCE_CHARS]
        return out


# ------------------------------------------------------------------- lines


def line_counts(capture: Capture) -> dict[str, dict[int, Counts]]:
    """Per view, frame index -> exact bytes and blocks (the figures of ``sites``)."""
    frames = [node.frame for node in capture.nodes]
    out: dict[str, dict[int, Counts]] = {}
    for view in VIEWS:
        lines: dict[int, Counts] = {}
        for frame, counts in zip(frames, map(attrgetter(view), capture.nodes), strict=True):
            if frame >= 0 and (counts.bytes or counts.count):
                seen = lines.get(frame)
                if seen is None:
                    lines[frame] = Counts(counts.bytes, counts.count, counts.native)
                else:
                    seen.add(counts)
        out[view] = lines
    return out


def _largest(rows: list[tuple[int, Counts]], limit: int) -> list[tuple[int, Counts]]:
    """The ``limit`` lines with the most bytes, largest first (ties: first frame first)."""
    return heapq.nsmallest(limit, rows, key=lambda row: (-row[1].bytes, row[0]))


def _rows(lines: list[tuple[int, Counts]], tables: _Tables) -> list[list[int]]:
    return [[tables.frame(frame), c.bytes, c.count, c.native] for frame, c in lines]


def _files(capture: Capture, lines: list[tuple[int, Counts]], tables: _Tables) -> list[Any]:
    """Files by bytes: ``[file, bytes, blocks, number of lines, [[frame, bytes, blocks]...]]``."""
    by_file: dict[str, list[tuple[int, Counts]]] = {}
    for line in lines:
        by_file.setdefault(capture.frames[line[0]].filename, []).append(line)
    files = [
        (-sum(c.bytes for _, c in rows), name, sum(c.count for _, c in rows), rows)
        for name, rows in by_file.items()
    ]
    return [
        [
            tables.string(name),
            -negative,
            blocks,
            len(rows),
            _rows(_largest(rows, LINES_PER_FILE), tables),
        ]
        for negative, name, blocks, rows in heapq.nsmallest(
            FILES_PER_VIEW, files, key=lambda f: f[:2]
        )
    ]


# -------------------------------------------------------------------- tree


@dataclass
class _Shape:
    """The ``stacks`` forest: children lists and an order with parents first."""

    parents: list[int]  # -1 for a root
    children: list[list[int]]
    roots: list[int]
    order: list[int]


def _shape(capture: Capture) -> _Shape:
    count = len(capture.stacks)
    parents = [-1] * count
    children: list[list[int]] = [[] for _ in range(count)]
    roots = []
    for index, node in enumerate(capture.stacks):
        if 0 <= node.parent < count and node.parent != index:
            parents[index] = node.parent
            children[node.parent].append(index)
        else:
            roots.append(index)
    order: list[int] = []
    seen = [False] * count
    todo = list(reversed(roots))
    while todo:  # iterative: call trees can be deeper than the recursion limit
        index = todo.pop()
        if seen[index]:
            continue
        seen[index] = True
        order.append(index)
        todo.extend(children[index])
    return _Shape(parents, children, roots, order)


def _totals(capture: Capture, shape: _Shape, view: str) -> tuple[list[int], list[int]]:
    """Self and cumulative bytes of every stack node in ``view``."""
    own = [max(counts.bytes, 0) for counts in map(attrgetter(view), capture.stacks)]
    total = list(own)
    parents = shape.parents
    for index in reversed(shape.order):  # children before their parent
        parent = parents[index]
        if parent >= 0:
            total[parent] += total[index]
    return own, total


def _visible(shape: _Shape, total: list[int]) -> set[int]:
    """The nodes worth drawing: those with bytes, the heaviest :data:`TREE_NODES` if more.

    A parent is at least as heavy as its children and comes first in
    ``shape.order``, so the heaviest nodes always form a connected tree.
    """
    wanted = [(-total[i], rank, i) for rank, i in enumerate(shape.order) if total[i] > 0]
    if len(wanted) > TREE_NODES:
        wanted = heapq.nsmallest(TREE_NODES, wanted)
    return {index for _, _, index in wanted}


def tree_rows(capture: Capture, view: str, tables: _Tables, shape: _Shape) -> dict[str, Any]:
    """The pruned call tree of ``view`` as flat rows, depth first, heaviest child first.

    ``nodes`` is ``[parent, frame, total, self, ...]`` four numbers per node:
    ``parent`` is the row of the parent (-1: the root "all"), ``frame`` an
    index in the frame table or ``-1 - thread`` for a thread root. ``shown``
    rows of the ``nodes_with_bytes`` nodes that have bytes in the view.
    """
    own, total = _totals(capture, shape, view)
    whole = sum(total[index] for index in shape.roots)
    keep = _visible(shape, total)
    flat: list[int] = []
    heaviest = sorted((r for r in shape.roots if r in keep), key=lambda r: -total[r])
    todo = [(index, -1) for index in reversed(heaviest)]
    while todo:
        index, parent_row = todo.pop()
        node = capture.stacks[index]
        row = len(flat) // 4
        frame = tables.frame(node.frame) if node.frame >= 0 else -1 - max(node.thread, 0)
        flat += [parent_row, frame, total[index], own[index]]
        kids = sorted((c for c in shape.children[index] if c in keep), key=lambda c: -total[c])
        todo.extend((child, row) for child in reversed(kids))
    return {
        "total": whole,
        "nodes": flat,
        "shown": len(flat) // 4,
        "nodes_with_bytes": sum(1 for t in total if t > 0),
    }


# ------------------------------------------------------------------- views


def _view(
    capture: Capture,
    view: str,
    counts: dict[int, Counts],
    tables: _Tables,
    shape: _Shape,
) -> dict[str, Any]:
    lines = [(frame, c) for frame, c in counts.items() if c.bytes > 0]
    outside = unattributed(capture, view)
    return {
        "total": sum(c.bytes for _, c in lines),
        "blocks": sum(c.count for _, c in lines),
        "unattributed": sum(max(u.bytes, 0) for u in outside),
        "whole": sum(c.bytes for _, c in lines) + sum(max(u.bytes, 0) for u in outside),
        "whole_blocks": sum(c.count for _, c in lines) + sum(max(u.count, 0) for u in outside),
        "unattributed_why": [[u.reason, u.thread, u.bytes] for u in outside if u.bytes > 0],
        "lines": len(lines),
        "sites": _rows(_largest(lines, SITES_PER_VIEW), tables),
        "files": _files(capture, lines, tables),
        "file_count": len({capture.frames[frame].filename for frame, _ in lines}),
        "tree": tree_rows(capture, view, tables, shape),
    }


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: non-finite floats become null, the unknown a string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _number(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def report_data(capture: Capture) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-ready data."""
    tables = _Tables(capture)
    shape = _shape(capture)
    per_line = line_counts(capture)
    views = {view: _view(capture, view, per_line[view], tables, shape) for view in VIEWS}
    timeline = [
        [round(_number(t), 6), heap, rss]
        for t, heap, rss in decimate(capture.timeline, TIMELINE_POINTS)
    ]
    return {
        "version": DATA_VERSION,
        "meta": _plain(capture.meta),
        "exact": capture.exact,
        "peak_bytes": capture.peak_bytes,
        "peak_time": _number(capture.peak_time),
        "end_bytes": capture.end_bytes,
        "threads": [str(name) for name in capture.threads],
        "timeline": timeline,
        "strings": tables.strings,
        "frames": tables.frames,
        "sources": tables.sources(),
        "views": views,
        "view_labels": dict(VIEW_LABELS),
        "rss_labels": dict(RSS_LABELS),
    }


# -------------------------------------------------------------------- page


def _template(name: str) -> str:
    return resources.files("memtrim.run.render").joinpath("templates", name).read_text("utf-8")


def _title(capture: Capture) -> str:
    command = capture.meta.get("command") or []
    text = " ".join(str(part) for part in command) if isinstance(command, list) else str(command)
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return html.escape(f"memtrim: {text[:200]}" if text else "memtrim report")


def render_html(capture: Capture) -> str:
    """The whole report page for ``capture``: one self-contained HTML document."""
    script = _template("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    parts = {
        "TITLE": _title(capture),
        "SCRIPTHASH": f"sha256-{digest}",
        "CSS": _template("report.css"),
        "DATA": script_json(report_data(capture)),
        "JS": script,
    }
    # one pass: text put in is never scanned for placeholders again
    return _PLACEHOLDER.sub(lambda m: parts[m[1]], _template("report.html"))
