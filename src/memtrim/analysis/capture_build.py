"""Turn the engine's raw recording into a :class:`~memtrim.analysis.capture.Capture`.

The engine hands over its call tree as ``(parent, code, instruction)`` nodes
with one statistics tuple per node (live, total and at-peak bytes and
counts). Here instructions become line numbers, nodes that land on the same
line under the same parent are merged, and branches with nothing in them are
dropped.
"""

from __future__ import annotations

import bisect
import linecache
import os
from collections.abc import Callable, Sequence
from types import CodeType
from typing import Any

from memtrim.analysis.capture import VIEWS, Capture, Counts, Frame, Node, sites

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# engine stats tuple: (live_b, live_c, total_b, total_c, peak_b, peak_c)
RawStats = tuple[int, int, int, int, int, int]


class _Lines:
    """Instruction index -> line number, per code object (cached)."""

    def __init__(self) -> None:
        self._tables: dict[int, tuple[list[int], list[int | None], CodeType]] = {}

    def line(self, code: CodeType, lasti: int) -> int:
        table = self._tables.get(id(code))
        if table is None:
            starts, lines = [], []
            for start, _end, line in code.co_lines():
                starts.append(start)
                lines.append(line)
            table = self._tables[id(code)] = (starts, lines, code)
        starts, lines, _ = table
        index = bisect.bisect_right(starts, lasti * 2) - 1
        line = lines[index] if index >= 0 else None
        return line if line is not None else code.co_firstlineno


class _Interner:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._index: dict[tuple[str, str, int], int] = {}

    def add(self, filename: str, function: str, lineno: int) -> int:
        key = (filename, function, lineno)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.frames)
            self.frames.append(Frame(filename, function, lineno))
        return index


def _counts(stats: RawStats) -> tuple[Counts, Counts, Counts]:
    live_b, live_c, total_b, total_c, peak_b, peak_c = stats
    return Counts(peak_b, peak_c), Counts(live_b, live_c), Counts(total_b, total_c)


def _runner_nodes(
    raw_nodes: Sequence[tuple[int, Any, int]], ours: list[bool], is_entry: Callable[[Any], bool]
) -> list[bool]:
    """Nodes to drop: memtrim's runner, what called it and what it called.

    The program runs inside memtrim's runner; its stacks should start at the
    program's own first frame (an ``is_entry`` code called by the runner), and
    what the runner allocates (itself or through the standard library) is
    memtrim's bookkeeping, not the program's.
    """
    drop = list(ours)
    for index in range(len(raw_nodes) - 1, 0, -1):  # children come after parents
        parent = raw_nodes[index][0]
        if drop[index] and parent > 0 and raw_nodes[parent][1] is not None:
            drop[parent] = True  # the runner's callers
    helper = [False] * len(raw_nodes)
    for index in range(1, len(raw_nodes)):
        parent, code, _ = raw_nodes[index]
        if parent <= 0 or code is None or ours[index]:
            continue
        if helper[parent] or (ours[parent] and not is_entry(code)):
            helper[index] = drop[index] = True  # called by the runner for itself
    return drop


def _merge(
    raw_nodes: Sequence[tuple[int, Any, int]],
    raw_stats: Sequence[RawStats],
    frame_of: list[int],
    thread_of: list[int],
    drop: list[bool],
) -> list[Node]:
    """Nodes with one child per (parent, line), statistics added up."""
    out: list[Node] = []
    new_index: list[int] = [-1] * len(raw_nodes)
    by_key: dict[tuple[int, int, int], int] = {}
    for old, (parent, _code, _lasti) in enumerate(raw_nodes):
        if old == 0:
            continue  # the engine's "not attributed" node
        new_parent = new_index[parent] if parent > 0 else -1
        if drop[old]:
            # children of a dropped frame hang from the thread's root
            new_index[old] = _root_of(out, new_parent)
            continue
        key = (new_parent, frame_of[old], thread_of[old])
        index = by_key.get(key)
        if index is None:
            index = by_key[key] = len(out)
            out.append(Node(new_parent, frame_of[old], thread_of[old]))
        node = out[index]
        peak, leaks, allocated = _counts(raw_stats[old])
        node.peak.add(peak)
        node.leaks.add(leaks)
        node.allocated.add(allocated)
        new_index[old] = index
    return _prune(out)


def _root_of(nodes: list[Node], index: int) -> int:
    while index >= 0 and nodes[index].parent >= 0:
        index = nodes[index].parent
    return index


def _prune(nodes: list[Node]) -> list[Node]:
    """Drop subtrees with nothing in any view; keeps parents before children."""
    keep = [False] * len(nodes)
    for index in range(len(nodes) - 1, -1, -1):  # children come after parents
        node = nodes[index]
        if keep[index] or any(node.view(v).bytes or node.view(v).count for v in VIEWS):
            keep[index] = True
            if node.parent >= 0:
                keep[node.parent] = True
    remap: dict[int, int] = {}
    out = []
    for index, node in enumerate(nodes):
        if keep[index]:
            remap[index] = len(out)
            node.parent = remap.get(node.parent, -1)
            out.append(node)
    return out


def build(
    raw: dict[str, Any],
    *,
    meta: dict[str, Any],
    peak_bytes: int,
    peak_time: float,
    end_bytes: int,
    timeline: list[tuple[float, int, int]],
    thread_names: dict[int, str],
    is_entry: Callable[[Any], bool] | None = None,
) -> Capture:
    """Build the capture from ``_engine.rec_snapshot()`` and what the run observed."""
    raw_nodes = raw["nodes"]
    lines = _Lines()
    interner = _Interner()
    frame_of = [-1] * len(raw_nodes)
    thread_of = [0] * len(raw_nodes)
    for index, (parent, code, lasti) in enumerate(raw_nodes):
        if code is None:  # a thread root: lasti holds the thread's index
            thread_of[index] = max(lasti, 0)
            continue
        thread_of[index] = thread_of[parent] if parent >= 0 else 0
        frame_of[index] = interner.add(code.co_filename, code.co_qualname, lines.line(code, lasti))
    ours = [code is not None and code.co_filename.startswith(_PACKAGE) for _, code, _ in raw_nodes]
    drop = _runner_nodes(raw_nodes, ours, is_entry or (lambda code: True))
    nodes = _merge(raw_nodes, raw["stats"], frame_of, thread_of, drop)
    if raw["sampled"] is None:
        stacks = nodes
    else:
        stacks = _merge(raw_nodes, raw["sampled"], frame_of, thread_of, drop)
    threads = [thread_names.get(ident, f"thread {ident}") for ident in raw["threads"]]
    meta = {**meta, "exact": bool(raw["exact"]), "sample_bytes": int(raw["sample_bytes"])}
    capture = Capture(
        meta=meta,
        peak_bytes=peak_bytes,
        peak_time=peak_time,
        end_bytes=end_bytes,
        frames=interner.frames,
        threads=threads or ["MainThread"],
        nodes=nodes,
        stacks=stacks,
        timeline=timeline,
    )
    capture.sources = _sources(capture)
    return capture


def _sources(capture: Capture, per_view: int = 200) -> dict[str, dict[int, str]]:
    """Source text of the lines the reports show first."""
    wanted: set[Frame] = set()
    for view in VIEWS:
        for site in sites(capture, view, per_view):
            wanted.add(site.frame)
            wanted.update(site.stack[-8:])
    out: dict[str, dict[int, str]] = {}
    for frame in wanted:
        text = linecache.getline(frame.filename, frame.lineno).strip()
        if text:
            out.setdefault(frame.filename, {})[frame.lineno] = text
    return out
