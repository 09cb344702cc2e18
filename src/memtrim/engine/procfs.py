"""Process memory, read one way: the memory of a process now, and the kernel's peak.

Every figure memtrim shows of a process's resident memory comes from here (in
Python) or from ``procfs.c`` (in C, the same reads): on Linux ``/proc/PID/statm``
(and ``smaps_rollup`` for PSS/USS) through the native sampler's reader,
elsewhere psutil.

The peak functions read the kernel's *high-water mark* of resident memory:
``VmHWM`` on Linux, which :func:`reset_peak_rss` restarts from the current
RSS by writing ``5`` to ``/proc/PID/clear_refs``; ``ru_maxrss`` of
:func:`resource.getrusage` on macOS and other Unixes, and ``peak_wset`` on
Windows, which cannot be reset.
"""

from __future__ import annotations

import os
import sys

try:
    from memtrim.engine import _sampler as _native
except ImportError:  # pragma: no cover - depends on the build
    _native = None  # type: ignore[assignment]

NATIVE = bool(_native is not None and getattr(_native, "SUPPORTED", 0))
METRICS = ("rss", "pss", "uss")


def rss() -> int:
    """This process's resident set size in bytes (0 if it cannot be read)."""
    return memory_of(os.getpid()) or 0


def memory_of(pid: int, metric: str = "rss") -> int | None:
    """Memory of ``pid`` now, in bytes; ``None`` if it cannot be read or has none."""
    if NATIVE:
        value = _native.read_memory(pid, METRICS.index(metric))
        return value if value > 0 else None
    import psutil

    try:
        process = psutil.Process(pid)
        if metric == "rss":
            value = process.memory_info().rss
        else:
            value = getattr(process.memory_full_info(), metric)
    except (psutil.Error, OSError):
        return None
    return value if value > 0 else None  # 0: a zombie or a kernel thread


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
