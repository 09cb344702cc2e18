"""The terminal summary of a capture: peak, top lines and stacks, what is still
allocated at exit, timeline."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from memtrim.model.rss import RssBreakdown
from memtrim.model.units import human
from memtrim.run.capture import (
    VIEW_LABELS,
    Capture,
    Frame,
    Site,
    sites,
    stacks_at,
    unattributed,
    view_total,
)

_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int], width: int = 60) -> str:
    """Values as a row of block characters, each the highest of its bucket."""
    if not values:
        return ""
    step = max(len(values) / width, 1.0)
    buckets = [
        max(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
        for i in range(min(width, len(values)))
    ]
    top = max(buckets) or 1
    return "".join(
        _BARS[min(int(v / top * (len(_BARS) - 1) + 0.5), len(_BARS) - 1)] for v in buckets
    )


def _short(path: str, cwd: str | None = None) -> str:
    """A path as short as it can be told: relative to the current directory
    (``cwd``, else the process's), else to the ``sys.path`` entry it lies in
    (``json/decoder.py``); frozen modules by their name."""
    if path.startswith("<frozen ") and path.endswith(">"):
        return path[len("<frozen ") : -1]
    try:
        rel = os.path.relpath(path, cwd) if cwd else os.path.relpath(path)
    except (ValueError, OSError):  # another drive; the directory is gone
        rel = path
    if not rel.startswith(".."):
        return rel
    best = path
    for entry in sys.path[1:]:
        if entry and path.startswith(entry.rstrip(os.sep) + os.sep):
            candidate = path[len(entry.rstrip(os.sep)) + 1 :]
            if len(candidate) < len(best):
                best = candidate
    return best


def _where(frame: Frame, cwd: str | None = None) -> str:
    return f"{_short(frame.filename, cwd)}:{frame.lineno}"


def _fit(width: int, cells: dict[str, list[str]], fixed: list[str]) -> dict[str, int]:
    """Column widths for ``width`` terminal columns: the ``fixed`` columns as
    wide as their cells; the line as wide as it needs (up to 48, folded
    beyond); then the function (up to 22) and the source share what is left,
    each left out (0) when there is no room for it."""
    wanted = {name: max(map(len, cells[name])) for name in ("line", "function", "source")}
    room = width - 3 * len(fixed) - sum(max(map(len, cells[name])) for name in fixed)
    line = min(wanted["line"], 48)
    function = min(wanted["function"], 22)
    sizes = {"line": max(room, 12), "function": 0, "source": 0}
    if room >= line + 3 + 10:  # the function fits beside the whole line
        sizes["line"] = line
        sizes["function"] = min(function, room - line - 3)
        left = room - line - 3 - sizes["function"] - 3
        if left >= 12 and wanted["source"]:
            sizes["source"] = min(wanted["source"], left)
        elif sizes["function"] < function:  # no source: the function takes the room
            sizes["function"] = min(wanted["function"], room - line - 3)
    return sizes


def _sites_table(
    title: str, rows: list[Site], capture: Capture, cwd: str | None, width: int
) -> Table:
    """The sites as a table that fits ``width`` columns: the figures whole,
    the line folded if it must, function and source shortened, then left out."""
    native = any(site.native for site in rows)  # most programs' tables have no native column
    cells: dict[str, list[str]] = {
        "bytes": ["bytes"],
        "blocks": ["blocks"],
        "share": ["share"],
        **({"native": ["native"]} if native else {}),
        "line": ["line"],
        "function": ["function"],
        "source": [""],
    }
    for site in rows:
        frame = site.frame
        cells["bytes"].append(human(site.bytes))
        cells["blocks"].append(f"{site.count:,}")
        cells["share"].append(f"{site.share:.0%}")
        if native:
            cells["native"].append(human(site.native) if site.native else "-")
        cells["line"].append(_where(frame, cwd))
        cells["function"].append(frame.function)
        cells["source"].append(
            capture.sources.get(frame.filename, {}).get(frame.lineno, "").strip()
        )
    fixed = [name for name in cells if name not in ("line", "function", "source")]
    sizes = _fit(width, cells, fixed)
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for name in fixed:
        table.add_column(name, justify="right", no_wrap=True, min_width=max(map(len, cells[name])))
    table.add_column("line", overflow="fold", width=sizes["line"])
    shown = [name for name in ("function", "source") if sizes[name]]
    for name in shown:
        table.add_column(name, overflow="ellipsis", no_wrap=True, width=sizes[name])
    for i in range(1, len(rows) + 1):
        table.add_row(
            *(cells[name][i] for name in fixed),
            Text(cells["line"][i]),
            *(Text(cells[name][i]) for name in shown),
        )
    return table


def partial_note(meta: dict[str, Any]) -> str | None:
    """What a capture written while the program ran says about its end."""
    partial = meta.get("partial")
    if not isinstance(partial, dict):
        return None
    peak = partial.get("peak")
    when = partial.get("time")
    why = partial.get("reason", "")
    limit = f" ({partial['limit']})" if partial.get("limit") else ""
    ending = meta.get("exit")
    signal_at = partial.get("signal")  # (the dump's: written after a grace period)
    if isinstance(ending, dict) and ending.get("kind") == "signal":  # SIGTERM in a C call
        after = (
            f" {when - signal_at:.1f} s after it came"
            if isinstance(signal_at, int | float) and isinstance(when, int | float)
            else " when the signal came"
        )
        head = (
            f"the program was ended by {ending.get('message', 'a signal')} in a C call that "
            f"did not return: this capture was written{after}"
        )
    else:
        head = (
            "the program did not finish under memtrim (killed: SIGKILL, the OOM killer, a "
            "container's limit?): this capture was written while it ran"
        )
    return (
        head
        + (f", at {when:.2f} s" if isinstance(when, int | float) else "")
        + (f", {why}{limit}" if why else "")
        + (f"; its peak then: {human(peak)}" if isinstance(peak, int) else "")
    )


def children_note(meta: dict[str, Any]) -> str | None:
    """How many child processes ran outside this profile, and what they held."""
    found = meta.get("children")
    if not isinstance(found, dict) or not found.get("count"):
        return None
    count = int(found["count"])
    held = ""
    if found.get("peak_rss_each"):
        held = (
            f" (resident memory: up to {human(found['peak_rss_each'])} each, "
            f"{human(found.get('peak_rss_together', 0))} together)"
        )
    if meta.get("follow_fork"):
        where = "forked children have captures of their own; spawned ones are not profiled"
    else:
        where = "not in this profile: --follow-fork profiles forked children (a capture each)"
    return f"{count:,} child process{'' if count == 1 else 'es'} ran{held}: {where}"


def processes_note(meta: dict[str, Any]) -> str | None:
    """The run's processes together (--follow-fork): the moment they held the most."""
    found = meta.get("processes")
    if not isinstance(found, dict) or not found.get("count"):
        return None
    parts = found.get("at_peak", [])
    shown = ", ".join(
        f"{'this process' if not part['file'] else part['file']} {human(part['heap'])}"
        for part in parts[:4]
    )
    more = f", {len(parts) - 4} more" if len(parts) > 4 else ""
    unread = f" ({found['unread']} captures not read)" if found.get("unread") else ""
    count = int(found["count"])
    return (
        f"this process and its {count} forked child{'' if count == 1 else 'ren'} together"
        f"{unread}: heap peak {human(found['peak'])} at {found['time']:.2f} s ({shown}{more}); "
        "from their timelines: each process's own peak is exact, their sum at the "
        "timeline's resolution"
    )


def _native_notes(meta: dict[str, Any]) -> list[str]:
    """What could not be tracked (C libraries' memory, full stacks), one line each."""
    notes = []
    partial = partial_note(meta)
    if partial:
        notes.append(partial)
    children = children_note(meta)
    if children:
        notes.append(children)
    together = processes_note(meta)
    if together:
        notes.append(together)
    gaps = meta.get("stack_gaps")
    if gaps:
        about = "~" if not meta.get("exact") else ""
        notes.append(
            f"the call tree was full: {about}{human(gaps['peak'][0])} at the peak "
            f"({about}{human(gaps['allocated'][0])} allocated) have stacks with frames left "
            "out, shown as '(frames left out: call tree full)'; per-line figures stay exact"
        )
    if meta.get("tree_full_blocks"):
        notes.append(
            f"{meta['tree_full_blocks']:,} blocks were charged to an outer frame "
            "(the call tree reached its hard limit)"
        )
    if meta.get("native_error"):
        notes.append(f"native memory not counted: {meta['native_error']}")
    if meta.get("native_untracked_maps"):
        notes.append(
            f"{meta['native_untracked_maps']} anonymous mappings of C libraries were not "
            "tracked (more than 65,536 at once)"
        )
    return notes


def _rss_table(found: RssBreakdown, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("part", overflow="fold", min_width=24)
    table.add_column("note", overflow="fold", style="dim")
    for label, size, share, note in found.rows():
        if size:
            table.add_row(human(size), f"{share:.0%}", Text(label), Text(note))
    return table


def _rss(capture: Capture, console: Console) -> None:
    """The RSS near the peak (or at exit) in parts that add up to it; the
    other moment in one line; what to act on."""
    saved = capture.meta.get("rss") or {}
    peak = RssBreakdown.from_dict(saved["peak"]) if "peak" in saved else None
    at_exit = RssBreakdown.from_dict(saved["at_exit"]) if "at_exit" in saved else None
    shown = peak or at_exit
    if shown is None:
        return
    when = (
        f"near the peak (heap {human(saved['peak'].get('heap', 0))})"
        if shown is peak
        else "at exit"
    )
    console.print(_rss_table(shown, f"Resident memory {when}: {human(shown.rss)}"))
    if peak is not None and at_exit is not None:
        parts = ", ".join(
            f"{label} {human(size)}" for label, size, _, _ in at_exit.rows()[:4] if size
        )
        console.print(Text(f"  at exit: {human(at_exit.rss)} ({parts}, ...)"))
    for fact in (shown.facts + (at_exit.facts if at_exit is not shown and at_exit else []))[:4]:
        console.print(Text(f"  • {fact}"))


def _unattributed(capture: Capture, view: str, console: Console) -> None:
    for item in unattributed(capture, view):
        console.print(
            Text(
                f"  not in any line: {human(item.bytes)} in {item.count:,} "
                f"block{'' if item.count == 1 else 's'} "
                f"({item.reason}; thread {item.thread})"
            )
        )


def _stacks(
    capture: Capture, rows: list[Site], console: Console, cwd: str | None, depth: int = 4
) -> None:
    estimate = "" if capture.exact else " (~: the line's exact bytes split by sampling)"
    console.print(Text(f"Stacks at the peak of the top lines{estimate}:", style="bold"))
    for site in rows:
        where = _where(site.frame, cwd)
        console.print(Text(f"  {where} {site.frame.function}: {human(site.bytes)}"))
        for found in stacks_at(capture, "peak", site.frame):
            frames = list(found.stack)
            shown = frames[-depth:]
            chain = " → ".join(f"{f.function} ({_where(f, cwd)})" for f in shown)
            more = "… → " if len(frames) > len(shown) else ""
            mark = "" if capture.exact else "~"
            console.print(Text(f"    {mark}{human(found.bytes):>10}  {more}{chain}"))


def render_summary(
    capture: Capture,
    stream: TextIO,
    top: int = 8,
    width: int | None = None,
    cwd: str | None = None,
) -> None:
    """Write the summary to ``stream`` (colours only if it is a terminal).

    Paths are shown relative to ``cwd`` (default: the current directory, read
    now; ``memtrim run`` passes the one the program started in).
    """
    console = Console(file=stream, width=width, highlight=False, soft_wrap=False)
    meta = capture.meta
    mode = (
        "exact" if capture.exact else f"sampled stacks (1 per {human(meta.get('sample_bytes', 0))})"
    )
    console.print(
        Text(
            f"memtrim run: {' '.join(meta.get('command', []))}\n"
            f"peak {human(capture.peak_bytes)} at {capture.peak_time:.2f} s of "
            f"{meta.get('duration', 0):.2f} s; still allocated at exit "
            f"{human(capture.end_bytes)}; mode: {mode}",
            style="bold",
        )
    )
    for note in _native_notes(meta):
        console.print(Text(f"note: {note}", style="dim"))
    peak_sites = sites(capture, "peak", top)
    width = console.width
    console.print(_sites_table(f"{VIEW_LABELS['peak']}, by line", peak_sites, capture, cwd, width))
    _unattributed(capture, "peak", console)
    _stacks(capture, peak_sites[:3], console, cwd)
    console.print(
        _sites_table(
            f"{VIEW_LABELS['at_exit']}, by line",
            sites(capture, "at_exit", top),
            capture,
            cwd,
            width,
        )
    )
    _unattributed(capture, "at_exit", console)
    allocated = view_total(capture, "allocated")
    console.print(
        _sites_table(
            f"{VIEW_LABELS['allocated']} ({human(allocated)} in all), by line",
            sites(capture, "allocated", top),
            capture,
            cwd,
            width,
        )
    )
    if capture.timeline:
        heap = [p[1] for p in capture.timeline]
        rss = [p[2] for p in capture.timeline]
        console.print(Text(f"heap {sparkline(heap)} max {human(max(heap))}"))
        console.print(Text(f"RSS  {sparkline(rss)} max {human(max(rss))}"))
    _rss(capture, console)
