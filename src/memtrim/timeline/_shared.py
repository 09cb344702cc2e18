"""What the timeline's session and ``memory_usage()`` share: checked options, the
kernel's single peak-RSS mark shared among nested windows, and exact heap peaks.

Kept apart so that :mod:`memtrim.timeline.session` and
:mod:`memtrim.timeline._usage` both build on it without importing each other.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from memtrim.engine import hooks
from memtrim.engine.procfs import read_peak_rss, reset_peak_rss

# backend name (memory_profiler's and ours) -> what the sampler reads
_BACKENDS = {
    None: "rss",
    "rss": "rss",
    "psutil": "rss",
    "posix": "rss",
    "pss": "pss",
    "psutil_pss": "pss",
    "uss": "uss",
    "psutil_uss": "uss",
    # memory_profiler's tracemalloc backend: Python's allocations, here from
    # the engine's exact heap accounting (this process only)
    "tracemalloc": "heap",
}
HEAP_METRIC = "heap"


MIN_INTERVAL = 0.001  # a sample costs tens of microseconds of CPU
MAX_INTERVAL = 86400.0


def check_interval(interval: Any, what: str = "interval") -> float:
    """A positive, finite number of seconds, or :class:`ValueError`.

    A sampling interval must also lie between 1 ms and one day; a timeout
    (``what="timeout"``) only needs to be positive.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ValueError(f"{what} must be a number of seconds, got {interval!r}")
    if not (math.isfinite(interval) and interval > 0):
        raise ValueError(f"{what} must be > 0 seconds, got {interval!r}")
    if what == "interval" and not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise ValueError(f"interval must be from {MIN_INTERVAL} s to one day, got {interval!r}")
    return float(interval)


def check_backend(backend: str | None) -> str:
    """The metric a backend name means, or :class:`ValueError`."""
    if backend not in _BACKENDS:
        names = ", ".join(repr(name) for name in _BACKENDS if name)
        raise ValueError(f"unknown backend {backend!r}: use one of {names}")
    return _BACKENDS[backend]


# ------------------------------------------------------------ the kernel's peak


class _HighWater:
    """Shares the kernel's single peak-RSS counter among nested windows.

    Resetting the counter (Linux) would lose the peak of enclosing windows,
    so before every reset the current mark is folded into every open window.
    Where it cannot be reset, a window knows its peak only if the mark rose
    while it was open (the mark never goes down).

    While someone listens (:meth:`listen`), every read of the mark and every
    reset is also logged as ``(monotonic_ns, mark)`` (``mark=None``: a
    reset, timed after it was done), so that a track can tell between which
    samples its peak happened although phases reset the counter meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, list[Any]] = {}  # id -> [resettable, mark at open, best]
        self._next = 0
        self._log: list[tuple[int, int | None]] = []
        self._dropped = 0  # entries already removed from the front of _log
        self._listeners: dict[int, int] = {}  # id -> position in the log when it began

    def _note(self, t_ns: int, mark: int | None) -> None:
        if self._listeners:
            self._log.append((t_ns, mark))

    def _read(self) -> int | None:
        t_ns = time.monotonic_ns()
        mark = read_peak_rss()
        if mark is not None:
            self._note(t_ns, mark)
        return mark

    def _fold(self) -> None:
        mark = self._read()
        for window in self._open.values():
            if window[0] and mark is not None:
                window[2] = max(window[2], mark)

    def open(self) -> int:
        """Start a window; returns its id."""
        with self._lock:
            self._fold()
            resettable = reset_peak_rss()
            if resettable:
                self._note(time.monotonic_ns(), None)
            mark = self._read()
            self._next += 1
            self._open[self._next] = [resettable and mark is not None, mark, mark or 0]
            return self._next

    def close(self, window: int) -> int | None:
        """End a window: its peak RSS in bytes, or ``None`` if the kernel cannot tell."""
        with self._lock:
            self._fold()
            resettable, at_open, best = self._open.pop(window)
        if resettable:
            return best
        mark = read_peak_rss()
        if mark is not None and at_open is not None and mark > at_open:
            return mark
        return None

    def discard(self, window: int) -> None:
        """Forget a window without a result (its owner failed to start)."""
        with self._lock:
            self._open.pop(window, None)

    def listen(self) -> int:
        """Start logging reads and resets for a listener; returns its id."""
        with self._lock:
            self._next += 1
            self._listeners[self._next] = self._dropped + len(self._log)
            return self._next

    def unlisten(self, listener: int) -> list[tuple[int, int | None]]:
        """Stop listening: the ``(monotonic_ns, mark or None)`` logged since it began."""
        with self._lock:
            begin = self._listeners.pop(listener)
            events = self._log[begin - self._dropped :]
            keep = min(self._listeners.values(), default=self._dropped + len(self._log))
            del self._log[: keep - self._dropped]
            self._dropped = keep
        return events


MAX_OPEN = 64  # the engine's peak watches (hooks.c)
_HIGH_WATER = _HighWater()


# ------------------------------------------------------------ exact heap peaks


class _HeapWatch:
    """The engine's exact peak of a block: hooks held, a peak watch from a base level.

    Disabled (``enabled=False``), it holds nothing and reports ``None``.
    """

    def __init__(self, enabled: bool, native: bool | None = None) -> None:
        self.enabled = enabled
        self.base = 0
        self._watch = -1
        self._hooks = hooks.acquire("track", native) if enabled else None

    def begin(self) -> None:
        """Start counting now: call it last, after memtrim's own bookkeeping."""
        if self.enabled:
            self.base = hooks.level()
            try:
                self._watch = hooks.watch_begin()
            except RuntimeError:
                raise RuntimeError(
                    f"cannot start another track or phase: {MAX_OPEN} are open already, "
                    "the most the engine follows at once"
                ) from None

    @property
    def begun(self) -> bool:
        """Has :meth:`begin` started a watch (always true when disabled)?"""
        return not self.enabled or self._watch >= 0

    def peak(self) -> int | None:
        """The highest level above the base so far."""
        return hooks.watch_peak(self._watch) - self.base if self.enabled else None

    def increment(self) -> int | None:
        """The level now minus the base."""
        return hooks.level() - self.base if self.enabled else None

    def end(self) -> tuple[int | None, int | None]:
        """Stop: ``(peak, increment)``. Call it first, before memtrim's bookkeeping."""
        if not self.enabled:
            return None, None
        peak = hooks.watch_end(self._watch) - self.base
        increment = hooks.level() - self.base
        return peak, increment

    def release(self) -> None:
        """Let the hooks go (after :meth:`end`; once only)."""
        if self._hooks is not None:
            self._hooks.release()  # idempotent
