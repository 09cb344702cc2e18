"""Sample a process's memory at a fixed interval, and read the kernel's peak.

On Linux the samples come from a native thread (:mod:`memtrim.engine._sampler`)
that never takes the GIL, so the interval holds while the program sits in a
long C call. Elsewhere a Python thread samples through psutil; it pauses
while another thread holds the GIL (documented in ``docs/timeline.md``).

A raw sample is a plain tuple ``(t_ns, heap, ((pid, bytes), ...))``: the
``time.monotonic_ns()`` clock, the engine's heap level (``None`` when not
read) and the memory of the watched process first, then of its descendants,
all read at the same instant.

The peak functions read the kernel's *high-water mark* of resident memory:
``VmHWM`` on Linux, which :func:`reset_peak_rss` restarts from the current
RSS by writing ``5`` to ``/proc/PID/clear_refs``; ``ru_maxrss`` of
:func:`resource.getrusage` on macOS and other Unixes, and ``peak_wset`` on
Windows, which cannot be reset.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

RawSample = tuple[int, int | None, tuple[tuple[int, int], ...]]
METRICS = ("rss", "pss", "uss")

try:
    from memtrim.engine import _sampler as _native
except ImportError:  # pragma: no cover - depends on the build
    _native = None  # type: ignore[assignment]

NATIVE = bool(_native is not None and getattr(_native, "SUPPORTED", 0))


def _heap_capsule() -> Any:
    from memtrim.engine import load

    return load()._C_API


class Sampler:
    """Samples ``pid`` (and its descendants if ``children``) every ``interval`` s.

    ``heap=True`` also reads the engine's heap level (this process only, and
    only while the hooks are installed). Use as a context manager or call
    :meth:`start` / :meth:`stop`; :meth:`drain` returns the samples taken since
    the last drain.
    """

    def __init__(
        self,
        pid: int,
        interval: float,
        *,
        children: bool = False,
        metric: str = "rss",
        heap: bool = False,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
        if NATIVE:
            capsule = _heap_capsule() if heap else None
            self._impl: Any = _native.Sampler(
                pid, interval, children, METRICS.index(metric), capsule
            )
        else:
            self._impl = _PsutilSampler(pid, interval, children, metric, heap)

    def start(self) -> None:
        """Start sampling in the background."""
        self._impl.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread to end."""
        self._impl.stop()

    def drain(self) -> list[RawSample]:
        """The samples taken since the last call, oldest first."""
        return self._impl.drain()

    def sample_now(self) -> RawSample | None:
        """One sample taken now by the caller; ``None`` if the process is gone."""
        return self._impl.sample_now()

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
                    values.append((proc.pid, self._memory(proc)))
                except psutil.NoSuchProcess:
                    if proc is self._process:
                        raise
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        heap = None
        if self._heap:
            from memtrim.engine import heap as engine_heap

            heap = engine_heap.level() if engine_heap.is_installed() else None
        return (time.monotonic_ns(), heap, tuple(values))

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


def memory_of(pid: int, metric: str = "rss") -> int | None:
    """Memory of ``pid`` now, in bytes; ``None`` if it cannot be read."""
    if NATIVE:
        value = _native.read_memory(pid, METRICS.index(metric))
        return value if value > 0 else None
    import psutil

    try:
        process = psutil.Process(pid)
        if metric == "rss":
            return process.memory_info().rss
        return getattr(process.memory_full_info(), metric)
    except (psutil.Error, OSError):
        return None


# ------------------------------------------------------------- the kernel's peak


def reset_peak_rss(pid: int | None = None) -> bool:
    """Restart the kernel's peak-RSS counter of ``pid`` (default: this process).

    Returns whether it could: only Linux can, and only for a process we may
    write ``/proc/PID/clear_refs`` of.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open(f"/proc/{pid or 'self'}/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def read_peak_rss(pid: int | None = None) -> int | None:
    """The kernel's peak RSS of ``pid`` (default: this process) in bytes, or ``None``."""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid or 'self'}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None
    if pid is None or pid == os.getpid():
        return _own_peak_rss()
    return _psutil_peak(pid)


def _own_peak_rss() -> int | None:
    if sys.platform == "win32":
        return _psutil_peak(os.getpid())
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS says bytes, others KiB


def _psutil_peak(pid: int) -> int | None:
    import psutil

    try:
        info = psutil.Process(pid).memory_info()
    except (psutil.Error, OSError):
        return None
    return getattr(info, "peak_wset", None)
