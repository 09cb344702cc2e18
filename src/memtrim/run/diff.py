"""Two runs of a program compared: what grew, line by line and stack by stack.

Each side is a :class:`Side`: per view (``peak``, ``at_exit``,
``allocated``) the bytes of every line and every stack. A side comes from a
capture (every line, every stack the capture holds) or from a ``--json``
report (the sites it lists: the top lines of each view, with one stack each;
their source text read from the files, when they are still there).

Lines are matched across edits by their file (relative to the run's root),
their function and their source text, not by line number: a line moved down
by an edit above it is the same line. A line whose source is not known is
matched by its line within its function. Stacks are matched frame by frame
the same way.
"""

from __future__ import annotations

import linecache
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from memtrim.model.findings import Site
from memtrim.run.capture import VIEWS, Capture

LineKey = tuple[str, str, str]  # (path, function, source text or "#line-in-function")


@dataclass
class Line:
    """One line's figure on one side of the diff."""

    site: Site
    bytes: int = 0


@dataclass
class Side:
    """One run: totals, lines and stacks per view, and what it ran."""

    label: str
    command: str
    totals: dict[str, int] = field(default_factory=dict)
    lines: dict[str, dict[LineKey, Line]] = field(default_factory=dict)
    stacks: dict[str, dict[tuple[LineKey, ...], tuple[int, list[Site]]]] = field(
        default_factory=dict
    )
    complete: bool = True  # every line (a capture), or only the top ones (a JSON report)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds, heap bytes)


@dataclass
class Change:
    """A line (or a stack) in both runs, or in one: its bytes before and after."""

    key: Any
    where: list[Site]  # the line (one site) or the stack (outermost first), as in NEW if there
    base: int
    new: int

    @property
    def change(self) -> int:
        return self.new - self.base


@dataclass
class ViewDiff:
    view: str
    base: int
    new: int
    lines: list[Change]
    stacks: list[Change]

    @property
    def change(self) -> int:
        return self.new - self.base


def line_key(site: Site) -> LineKey:
    """What matches a line in another run: path, function, source text."""
    text = " ".join(site.source.split())
    if text:
        return (site.path, site.qualname, text)
    return (site.path, site.qualname, f"#{site.key[2]}")


def _command(meta: dict[str, Any]) -> str:
    command = meta.get("command") or []
    return " ".join(str(c) for c in command) if isinstance(command, list) else str(command)


def from_capture(capture: Capture, label: str) -> Side:
    """Every line and stack of a capture, per view."""
    side = Side(label, _command(capture.meta))
    side.timeline = [(float(t), int(heap)) for t, heap, _rss in capture.timeline]
    sites: dict[int, Site] = {}

    def site_of(index: int) -> Site:
        found = sites.get(index)
        if found is None:
            found = sites[index] = capture.site(capture.frames[index])
        return found

    for view in VIEWS:
        lines: dict[LineKey, Line] = {}
        stacks: dict[tuple[LineKey, ...], tuple[int, list[Site]]] = {}
        total = 0
        for index, node in enumerate(capture.nodes):
            size = node.view(view).bytes
            total += size
            if node.frame < 0 or not size:
                continue
            site = site_of(node.frame)
            entry = lines.setdefault(line_key(site), Line(site))
            entry.bytes += size
            frames = _frames(capture, index)
            path = [site_of(f) for f in frames]
            key = tuple(line_key(s) for s in path)
            before = stacks.get(key, (0, path))[0]
            stacks[key] = (before + size, path)
        side.totals[view] = total
        side.lines[view] = lines
        side.stacks[view] = stacks
    return side


def _frames(capture: Capture, index: int) -> list[int]:
    """Frame indices from the outermost call to node ``index``."""
    out = []
    nodes = capture.nodes
    while index >= 0:
        node = nodes[index]
        if node.frame >= 0:
            out.append(node.frame)
        index = node.parent
    out.reverse()
    return out


def from_report(data: dict[str, Any], label: str) -> Side:
    """The lines a ``--json`` report lists (its top sites), with one stack each."""
    side = Side(label, _command(data.get("meta") or {}), complete=False)
    for point in data.get("timeline") or []:
        if (
            isinstance(point, dict)
            and _is_number(point.get("time"))
            and _is_number(point.get("heap"))
        ):
            side.timeline.append((float(point["time"]), int(point["heap"])))
    root = data.get("root") or None
    sys_path = data.get("sys_path") or []
    for view in VIEWS:
        part = data.get(view)
        if not isinstance(part, dict):
            raise ValueError(f"the report has no {view!r} view")
        lines: dict[LineKey, Line] = {}
        stacks: dict[tuple[LineKey, ...], tuple[int, list[Site]]] = {}
        for entry in part.get("sites") or []:
            site = _report_site(entry, root, sys_path)
            size = int(entry["bytes"])
            lines.setdefault(line_key(site), Line(site)).bytes += size
            path = [_report_site(f, root, sys_path) for f in entry.get("stack") or []] or [site]
            key = tuple(line_key(s) for s in path)
            stacks[key] = (stacks.get(key, (0, path))[0] + size, path)
        total = part.get("attributed", part.get("bytes"))
        side.totals[view] = (
            int(total) if isinstance(total, int) else sum(line.bytes for line in lines.values())
        )
        side.lines[view] = lines
        side.stacks[view] = stacks
    return side


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _report_site(entry: dict[str, Any], root: str | None, sys_path: list[str]) -> Site:
    if not isinstance(entry, dict):
        raise ValueError("a site or frame of the report is not an object")
    filename = entry.get("filename")
    function = entry.get("function")
    lineno = entry.get("lineno")
    if not isinstance(filename, str) or not isinstance(function, str) or type(lineno) is not int:
        raise ValueError("a site or frame of the report lacks filename, function or lineno")
    first = entry.get("first_line")
    # a report carries no source text: the file's, if it is still there
    source = str(entry.get("source") or "") or linecache.getline(filename, lineno).strip()
    return Site.at(
        filename,
        function,
        lineno,
        first if type(first) is int and first > 0 else None,
        source,
        root,
        sys_path,
    )


def _changes(base: dict[Any, Any], new: dict[Any, Any], size: Any, where: Any) -> list[Change]:
    out = []
    for key in base.keys() | new.keys():
        b = size(base[key]) if key in base else 0
        n = size(new[key]) if key in new else 0
        if b != n:
            out.append(Change(key, where(new.get(key) or base[key]), b, n))
    out.sort(key=lambda c: (-abs(c.change), -c.new))
    return out


def compare(base: Side, new: Side, views: Iterable[str] = VIEWS) -> list[ViewDiff]:
    """Per view: the totals and every line and stack whose bytes changed,
    largest change first."""
    out = []
    for view in views:
        lines = _changes(
            base.lines[view], new.lines[view], lambda line: line.bytes, lambda line: [line.site]
        )
        stacks = _changes(
            base.stacks[view], new.stacks[view], lambda entry: entry[0], lambda entry: entry[1]
        )
        out.append(ViewDiff(view, base.totals[view], new.totals[view], lines, stacks))
    return out


def grew_too_much(diff: list[ViewDiff], percent: float | None, size: int | None) -> list[str]:
    """The views among the peak and the leaks (at exit) that grew more than
    ``percent`` % of the base or ``size`` bytes: why the diff fails."""
    failed = []
    for part in diff:
        if part.view not in ("peak", "at_exit") or part.change <= 0:
            continue
        over_percent = percent is not None and part.change > part.base * percent / 100
        over_size = size is not None and part.change > size
        if over_percent or over_size:
            failed.append(part.view)
    return failed
