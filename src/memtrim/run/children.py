"""The child processes a profiled program ran, seen from the outside.

``memtrim run`` profiles one process. A ``multiprocessing.Pool`` whose workers
allocate 300 MiB would otherwise show a 1.4 MiB peak and not a word about
them: :class:`Children` counts the children (every ``os.fork`` of the program,
and every descendant seen in ``/proc`` at the watcher's ticks) and the
resident memory they held (each one's high-water mark, and the most they held
together at one tick), so that the reports can say how much ran unprofiled.
"""

from __future__ import annotations

import os
from typing import Any

_FORKS = [0]  # forks made in this process (all of its runs)


def _count_fork() -> None:
    _FORKS[0] += 1


os.register_at_fork(after_in_parent=_count_fork)


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (``/proc/PID/task/TID/children``)."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 10_000:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            for word in _read(f"/proc/{parent}/task/{tid}/children").split():
                if word.isdigit():
                    out.append(int(word))
                    todo.append(int(word))
    return out


def _rss_and_hwm(pid: int) -> tuple[int, int]:
    rss = hwm = 0
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            parts = line.split()
            value = int(parts[1]) * 1024 if len(parts) > 1 and parts[1].isdigit() else 0
            if line.startswith("VmRSS:"):
                rss = value
            else:
                hwm = value
    return rss, hwm


class Children:
    """What this process's children held, polled from ``/proc``."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.forks0 = _FORKS[0]
        self.peaks: dict[int, int] = {}  # pid -> highest resident memory seen
        self.together = 0  # the most the children held at one poll

    def poll(self) -> None:
        """Look at the children now."""
        total = 0
        for child in descendants(self.pid):
            rss, hwm = _rss_and_hwm(child)
            self.peaks[child] = max(self.peaks.get(child, 0), rss, hwm)
            total += rss
        self.together = max(self.together, total)

    def summary(self) -> dict[str, Any] | None:
        """For the capture's meta: how many ran, what they held (None: no child)."""
        forks = _FORKS[0] - self.forks0
        count = max(len(self.peaks), forks)
        if not count:
            return None
        return {
            "count": count,
            "forks": forks,
            "seen": len(self.peaks),
            "peak_rss_each": max(self.peaks.values(), default=0),
            "peak_rss_together": self.together,
        }
