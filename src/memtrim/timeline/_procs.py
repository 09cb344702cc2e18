"""Processes that memory_usage() and ``memtrim record --pid`` watch: checks, start, end.

A command memtrim starts runs in its own session (so in its own process
group): when it must be stopped (a timeout, or memtrim interrupted), the
whole group is ended, so the command's own children are not left behind.
memtrim reaps it itself, with ``wait4()`` where there is one, which also
gives the kernel's peak RSS of the process tree it ran.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from memtrim.engine.procfs import memory_of

GRACE = 2.0  # seconds between asking a command to stop and forcing it


def check_pid(pid: int, metric: str) -> None:
    """:class:`ValueError` unless ``pid`` is a process we may read that has memory."""
    import psutil

    try:
        process = psutil.Process(pid)
        status = process.status()
        if metric == "rss":
            process.memory_info()
        else:
            process.memory_full_info()
    except psutil.NoSuchProcess:
        raise ValueError(f"no process with PID {pid}") from None
    except psutil.AccessDenied:
        raise ValueError(f"not allowed to read the memory of process {pid}") from None
    if status == psutil.STATUS_ZOMBIE:
        raise ValueError(
            f"process {pid} has exited (a zombie its parent has not reaped): "
            "it has no memory to measure"
        )
    if memory_of(pid, metric) is None:
        what = "is a kernel thread" if _is_kernel_thread(pid) else "has no memory"
        raise ValueError(f"process {pid} {what}: there is no memory to measure")


def _is_kernel_thread(pid: int) -> bool:
    """Linux: the ``PF_KTHREAD`` flag in ``/proc/PID/stat``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return bool(int(fields[6]) & 0x00200000)
    except (OSError, IndexError, ValueError):
        return False


def check_popen(popen: subprocess.Popen[bytes]) -> None:
    """:class:`ValueError` if a given ``Popen`` has already exited."""
    if popen.returncode is not None or (_can_peek() and exited(popen)):
        raise ValueError(f"process {popen.pid} has already exited: there is no memory to measure")


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own; :class:`ValueError` if it cannot start."""
    try:
        return subprocess.Popen(argv, start_new_session=os.name == "posix")
    except OSError as exc:
        raise ValueError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None


def _can_peek() -> bool:
    return hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


def exited(popen: subprocess.Popen[bytes]) -> bool:
    """Has it exited? Where possible without reaping it (so that :func:`reap`
    gets its resource usage and its process group stays reserved)."""
    if popen.returncode is not None:
        return True
    if not _can_peek():
        return popen.poll() is not None
    try:
        found = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped by someone else (a SIGCHLD handler)
        return popen.poll() is not None
    return found is not None


def end_group(popen: subprocess.Popen[bytes]) -> None:
    """Stop a command we started and everything in its process group: ask
    (SIGTERM), wait up to :data:`GRACE` seconds for it, then force (SIGKILL)."""
    if os.name != "posix":
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                popen.kill()
        return
    _signal_group(popen, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    while not exited(popen) and time.monotonic() < deadline:
        time.sleep(0.01)
    _signal_group(popen, signal.SIGKILL)  # stragglers too, even if the leader has gone


def _signal_group(popen: subprocess.Popen[bytes], signum: int) -> None:
    # The leader is not reaped yet, so its pid (the group's id) cannot be reused.
    if popen.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signum)


def reap(popen: subprocess.Popen[bytes]) -> int | None:
    """Wait for it and collect its exit status; returns the kernel's peak RSS
    (bytes) of the process or of one of its reaped descendants, if known."""
    if popen.returncode is not None or not hasattr(os, "wait4"):
        popen.wait()
        return None
    try:
        _, status, usage = os.wait4(popen.pid, 0)
    except ChildProcessError:
        popen.wait()
        return None
    popen.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
