"""Sample a process's memory at a fixed interval.

On Linux the samples come from a native thread (:mod:`memtrim.engine._sampler`)
that never takes the GIL, so the interval holds while the program sits in a
long C call. Elsewhere a Python thread samples through psutil; it pauses
while another thread holds the GIL (documented in ``docs/timeline.md``).

A raw sample is a plain tuple ``(t_ns, heap, ((pid, bytes), ...), marks)``:
the ``time.monotonic_ns()`` clock, the engine's heap level (``None`` when not
read), the memory of the watched process first, then of its descendants, all
read at the same instant, and (``marks=True``, else ``None``) each process's
kernel high-water mark read with it: ``((pid, hwm, reset_ns), ...)``, where
``reset_ns`` is the time the mark was reset right after the read (0 if it
was not: ``reset_marks=True`` resets the marks of every process but this
one, where permitted), so the next mark is the peak of one interval.

Single readings of a process's memory and of the kernel's peak are in
:mod:`memtrim.engine.procfs`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from typing import Any

from memtrim.engine import procfs
from memtrim.engine.procfs import METRICS

RawMarks = tuple[tuple[int, int, int], ...]
RawSample = tuple[int, int | None, tuple[tuple[int, int], ...], RawMarks | None]
# (t_ns, bytes, hwm, reset_ns) of the watched process, from Sampler.mark_now()
RawMark = tuple[int, int, int, int]

try:
    from memtrim.engine import _sampler as _native
except ImportError:  # pragma: no cover - depends on the build
    _native = None  # type: ignore[assignment]

NATIVE = bool(_native is not None and getattr(_native, "SUPPORTED", 0))


def _heap_capsule() -> Any:
    from memtrim.engine import load

    return load()._C_API


_bound: list[bool] = []


def _bind_engine() -> None:
    # Once: the sampler threads enter the engine's guard, so that what libc
    # allocates for them (hooked by the native hooks) is not the program's.
    if not _bound:
        _native.bind_engine(_heap_capsule())
        _bound.append(True)


class Sampler:
    """Samples ``pid`` (and its descendants if ``children``) every ``interval`` s.

    ``heap=True`` also reads the engine's heap level (this process only, and
    only while the hooks are installed). ``marks=True`` reads each process's
    kernel high-water mark with its memory (``rss`` only); ``reset_marks=True``
    also resets the marks of the processes other than this one after each
    read. Use as a context manager or call :meth:`start` / :meth:`stop`;
    :meth:`drain` returns the samples taken since the last drain.
    """

    def __init__(
        self,
        pid: int,
        interval: float,
        *,
        children: bool = False,
        metric: str = "rss",
        heap: bool = False,
        marks: bool = False,
        reset_marks: bool = False,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
        if (marks or reset_marks) and metric != "rss":
            raise ValueError("kernel marks are read with the rss metric only")
        if NATIVE:
            _bind_engine()
            capsule = _heap_capsule() if heap else None
            mode = 2 if reset_marks else 1 if marks else 0
            self._impl: Any = _native.Sampler(
                pid, interval, children, METRICS.index(metric), capsule, mode
            )
        else:
            self._impl = _PsutilSampler(pid, interval, children, metric, heap)

    def start(self) -> None:
        """Start sampling in the background."""
        self._impl.start()
        if NATIVE:
            _RUNNING.add(self)

    def stop(self) -> None:
        """Stop sampling and wait for the thread to end."""
        _RUNNING.discard(self)
        self._impl.stop()

    def drain(self) -> list[RawSample]:
        """The samples taken since the last call, oldest first."""
        return self._impl.drain()

    def sample_now(self) -> RawSample | None:
        """One sample taken now by the caller; ``None`` if the process is gone."""
        return self._impl.sample_now()

    def mark_now(self) -> RawMark | None:
        """The watched process's memory and kernel mark now (reset after it if
        ``reset_marks``); ``None`` if it has no memory or is gone."""
        return self._impl.mark_now()

    @property
    def count(self) -> int:
        """How many samples the background thread has taken."""
        return self._impl.count

    @property
    def process_gone(self) -> bool:
        """Has the sampled process exited (or become unreadable)?"""
        return self._impl.root_gone

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Native samplers whose thread runs. Around os.fork() their threads are paused,
# so that the child is forked from a process without them (no thread stopped
# mid-read in the child), and the program is not told it forks with threads
# when memtrim's are the only ones: Python 3.12+ warns "This process is
# multi-threaded, use of fork() may lead to deadlocks" where plain python
# would not. 3.12 counts the threads before the fork hooks resume ours; 3.13
# after, so a filter for that warning of this process is also set then (and
# taken away when the program has threads of its own). (GIL: all of it.)
_RUNNING: weakref.WeakSet[Sampler] = weakref.WeakSet()
_FORK_WARNING = r"This process \(pid={pid}\) is multi-threaded, use of fork(pty)?\(\) may lead"


def _pause_all() -> None:
    running = list(_RUNNING)
    if not running:
        return
    others = _os_threads() - len(running)
    for sampler in running:
        sampler._impl.pause()
    if sys.version_info >= (3, 12):
        _quiet_fork_warning(others <= 1)


def _resume_all() -> None:
    for running in list(_RUNNING):
        running._impl.resume()


def _forget_all() -> None:
    _RUNNING.clear()  # the child's copies have no thread and never get one


def _os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _quiet_fork_warning(quiet: bool) -> None:
    import warnings

    message = _FORK_WARNING.format(pid=os.getpid())
    if quiet:  # first in the list, before any filter the program set since
        warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
        return
    ours = [f for f in warnings.filters if f[0] == "ignore" and f[1] and f[1].pattern == message]
    for entry in ours:
        warnings.filters.remove(entry)
    mutated = getattr(warnings, "_filters_mutated", None)  # 3.11-3.13
    if ours and mutated is not None:
        mutated()


if NATIVE and hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_pause_all, after_in_parent=_resume_all, after_in_child=_forget_all)


class _PsutilSampler:
    """The portable fallback: a Python thread reading psutil (it needs the GIL)."""

    def __init__(self, pid: int, interval: float, children: bool, metric: str, heap: bool) -> None:
        import psutil

        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self._process = psutil.Process(pid)
        self._interval = interval
        self._children = children
        self._metric = metric
        self._heap = heap
        self._samples: list[RawSample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memtrim-sampler", daemon=True)
        self.count = 0
        self.root_gone = False

    def _memory(self, process: Any) -> int:
        if self._metric == "rss":
            return process.memory_info().rss
        return getattr(process.memory_full_info(), self._metric)

    def sample_now(self) -> RawSample | None:
        import psutil

        try:
            procs = [self._process]
            if self._children:
                procs += self._process.children(recursive=True)
            values = []
            for proc in procs:
                try:
                    memory = self._memory(proc)
                except psutil.NoSuchProcess:
                    if proc is self._process:
                        raise
                    continue
                if memory > 0:  # 0: a zombie (or a kernel thread), as the native sampler
                    values.append((proc.pid, memory))
                elif proc is self._process:
                    return None
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        heap = None
        if self._heap:
            from memtrim.engine import hooks as engine_heap

            heap = engine_heap.level() if engine_heap.is_installed() else None
        return (time.monotonic_ns(), heap, tuple(values), None)

    def mark_now(self) -> RawMark | None:
        t_ns = time.monotonic_ns()
        rss = procfs.memory_of(self._process.pid, "rss")
        if rss is None:
            return None
        peak = procfs.read_peak_rss(self._process.pid)
        return (t_ns, rss, max(rss, peak or 0), 0)  # never reset: ours cannot be

    def _run(self) -> None:
        deadline = time.monotonic()
        while not self._stop.is_set():
            sample = self.sample_now()
            if sample is None:
                self.root_gone = True
                return
            with self._lock:
                self._samples.append(sample)
                self.count += 1
            deadline += self._interval
            self._stop.wait(max(0.0, deadline - time.monotonic()))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def drain(self) -> list[RawSample]:
        with self._lock:
            taken, self._samples = self._samples, []
        return taken
