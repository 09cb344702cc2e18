"""Which line allocated a live object: the call tree's record of its block.

During a recording (``memtrim run``) every block carries the node of the call
tree it was charged to; :class:`Sites` asks the engine for the nodes of a
list of objects and names each node's line once. Outside a recording no line
is known (``None``).
"""

from __future__ import annotations

import linecache
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memtrim.engine import calltree


@dataclass(frozen=True)
class Line:
    """An allocating line: file, function, line number, its source text."""

    filename: str
    qualname: str
    lineno: int
    source: str


class Sites:
    """Allocating lines of live objects (``recording`` False: none known)."""

    def __init__(self, recording: bool) -> None:
        self.recording = recording
        self._lines: dict[int, Line | None] = {}

    def nodes(self, objs: Sequence[Any]) -> list[int]:
        """The node of each object's block (-1: not known)."""
        if not self.recording or not objs:
            return [-1] * len(objs)
        return calltree.block_nodes(objs)

    def line(self, node: int) -> Line | None:
        """The line of a node (None: not known)."""
        if node < 0:
            return None
        if node not in self._lines:
            site = calltree.node_site(node)
            if site is None:
                self._lines[node] = None
            else:
                filename, qualname, _first, lineno, _parent = site
                source = linecache.getline(filename, lineno).strip()
                self._lines[node] = Line(filename, qualname, lineno, source)
        return self._lines[node]

    def by_line(
        self, objs: Sequence[Any], each: bool = False
    ) -> list[tuple[Line | None, list[Any]]]:
        """The objects grouped by their allocating line (None: not known).
        Nodes of one line (several threads, or stacks in exact mode) merge.
        With no line known, ``each`` makes every object a group of its own
        (a big list is its own advice, not merged with every other list)."""
        groups: dict[Line | None, list[Any]] = {}
        for obj, node in zip(objs, self.nodes(objs), strict=True):
            groups.setdefault(self.line(node), []).append(obj)
        unknown = groups.pop(None, None) if each else None
        out = list(groups.items())
        if unknown:
            out += [(None, [obj]) for obj in unknown]
        return out

    def main_line(self, objs: Sequence[Any]) -> Line | None:
        """The line that allocated most of ``objs`` (None: none known)."""
        counts = Counter(n for n in self.nodes(objs) if n >= 0)
        for node, _ in counts.most_common():
            found = self.line(node)
            if found is not None:
                return found
        return None
