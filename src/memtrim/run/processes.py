"""The processes of one run together (``--follow-fork``): their heap at the same moment.

Under ``--follow-fork`` each forked child writes a capture of its own. A pool of
workers that each hold 100 MiB is a 100 MiB problem per worker, and a
``n x 100 MiB`` problem for the machine: :func:`combine` adds the processes'
heaps up along one time axis and finds the moment they held the most together,
and what each held then.

What a process holds: its heap over time, as its timeline has it (one point per
sampling interval, and its exact peak at its time). A forked child starts with
its parent's blocks (shared with the parent until written): its own part is
its heap less what it had at the fork (``meta["fork_level"]``), from the fork
(``meta["forked_at"]``) to its end. Children share their parent's time axis
(the run's start). The sum is exact at the timeline's points; between them a
peak of one process shorter than the sampling interval may be missed by the
others' (each process's own peak is in its series).
"""

from __future__ import annotations

import heapq
import os
import re
from typing import Any

from memtrim.model import files
from memtrim.run.capture import Capture, read

# at most this many processes are named in the moment's breakdown
SHOWN = 50


def _series(capture: Capture, forked: bool) -> list[tuple[float, int]]:
    """(time, own heap bytes) of one process, its peak included, ending at 0."""
    meta = capture.meta
    start = float(meta.get("forked_at", 0.0)) if forked else 0.0
    inherited = int(meta.get("fork_level", 0)) if forked else 0
    points = [(t, heap) for t, heap, _ in capture.timeline if t >= start]
    points.append((capture.peak_time, capture.peak_bytes))
    points.sort()
    series = [(t, max(heap - inherited, 0)) for t, heap in points]
    if forked:  # a child's part ends with it
        end = max(float(meta.get("duration", 0.0)), series[-1][0] if series else start)
        series.append((end, 0))
    return series


def combine(parent: Capture, children: list[tuple[str, Capture]]) -> dict[str, Any]:
    """The moment the run's processes held the most heap together, and each one's part.

    ``children``: (file name, capture) of each forked child's capture. Returns
    the ``meta["processes"]`` record: ``count`` (children), ``peak`` (bytes),
    ``time`` (seconds since the run's start), ``at_peak`` (``{pid, heap, file}``
    for each process, largest first, at most :data:`SHOWN`).
    """
    names = {0: ""}
    pids = {0: int(parent.meta.get("pid", 0))}
    series = {0: _series(parent, forked=False)}
    for index, (name, capture) in enumerate(children, 1):
        names[index] = name
        pids[index] = int(capture.meta.get("pid", 0))
        series[index] = _series(capture, forked=True)
    # sweep every process's changes in time order: the running total and the
    # moment it is highest (at a tie in time, all of that time's changes first)
    events = heapq.merge(*([(t, i, heap) for t, heap in s] for i, s in series.items()))
    now = {i: 0 for i in series}
    total = best = 0
    best_time = 0.0
    best_parts: dict[int, int] = {}
    pending: float | None = None
    for t, i, heap in events:
        if pending is not None and t != pending and total > best:
            best, best_time, best_parts = total, pending, dict(now)
        total += heap - now[i]
        now[i] = heap
        pending = t
    if pending is not None and total > best:
        best, best_time, best_parts = total, pending, dict(now)
    parts = sorted(
        (
            {"pid": pids[i], "heap": heap, "file": names[i]}
            for i, heap in best_parts.items()
            if heap > 0 or i == 0
        ),
        key=lambda part: -part["heap"],
    )
    return {
        "count": len(children),
        "peak": best,
        "time": round(best_time, 6),
        "at_peak": parts[:SHOWN],
    }


def gather(output: str, parent: Capture, limit: int = 256) -> dict[str, Any] | None:
    """:func:`combine` of the run's children's captures, found beside ``output``.

    A child of ``out.memtrim`` writes ``out.<pid>.memtrim`` (its own children
    ``out.<pid>.<pid>.memtrim``); one is this run's if it has the parent's
    start (a forked child keeps it). None if there is none. At most ``limit``
    are read; the record says how many were not (``unread``).
    """
    folder, name = os.path.split(os.path.abspath(output))
    base, ext = os.path.splitext(name)
    pattern = re.compile(re.escape(base) + r"(?:\.\d+)+" + re.escape(ext))
    try:
        names = sorted(entry for entry in os.listdir(folder) if pattern.fullmatch(entry))
    except OSError:
        return None
    found: list[tuple[str, Capture]] = []
    unread = max(len(names) - limit, 0)
    for entry in names[:limit]:
        try:
            child = read(os.path.join(folder, entry))
        except (OSError, files.FormatError):
            unread += 1
            continue
        if child.meta.get("started") == parent.meta.get("started"):
            found.append((entry, child))
    if not found:
        return None
    record = combine(parent, found)
    if unread:
        record["unread"] = unread
    return record
