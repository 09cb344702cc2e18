"""Keep a readable capture on disk while the program runs.

A program killed by SIGKILL, the kernel's OOM killer or a container's memory
limit leaves no chance to write anything: the moment a user most needs the
profile. :class:`DiskKeeper` writes the capture file while the program runs,
so that a killed program leaves the profile of its last known peak:

- when the heap's peak first reaches :data:`FIRST` bytes above the start, and
  each time it grows by :data:`STEP` after that;
- at once when the process comes close to its memory limit (the cgroup's
  ``memory.max``, the machine's available memory, or ``MEMTRIM_MEMORY_LIMIT``):
  the kernel may act at any moment;
- every :data:`REFRESH` seconds, whatever the peak (a program killed with a
  small peak, or in a C call that holds the GIL, still leaves a recent one);
- at a bounded rate: at least :data:`MIN_INTERVAL` seconds apart, and in at
  most :data:`BUDGET` of the run's time so far (the near-limit write excepted);
- at once when a SIGTERM came while the main thread is in a long C call that
  released the GIL (its Python handler cannot run), if ``on_term()`` gives what
  ends the process then (see :mod:`memtrim.engine.deadline`; under ``memtrim
  run`` it does not: the deadline's dump writes that capture and the reports).

A capture written this way says so (``meta["partial"]``: when, why, the peak
then); the capture written when the program ends replaces it. The watcher is a
low-level thread (``_thread``: not in ``threading.enumerate()``, no thread the
program would wait for) that wakes every :data:`TICK` seconds; what it
allocates is memtrim's own (never counted).
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from memtrim.engine import calltree, deadline, hooks

FIRST = 32 * 2**20
STEP = 1.5
MIN_INTERVAL = 1.0
# and at least this often once the run is that long, whatever its peak: a
# program killed with a small peak, or one whose SIGTERM comes in a C call
# that holds the GIL (engine/deadline), leaves a capture at most this old
REFRESH = 30.0
BUDGET = 0.05
TICK = 0.25
LIMIT_ENV = "MEMTRIM_MEMORY_LIMIT"
# "close to the limit": less headroom than this share of it, or than this many bytes
NEAR_SHARE = 0.05
NEAR_BYTES = 64 * 2**20
# seconds the main thread's SIGTERM handler gets before the keeper takes it
TERM_CLAIM = 0.2
TERM_REASON = "SIGTERM during a long C call"


def parse_bytes(text: str) -> int | None:
    """``"512M"``, ``"2G"``, ``"1048576"`` -> bytes (binary units); None if not a size."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = float(number)
    except ValueError:
        return None
    return int(value * scale) if value > 0 else None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as file:
            return file.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_dir() -> str | None:
    """This process's cgroup v2 directory, if there is one."""
    found = _read("/proc/self/cgroup")
    for line in (found or "").splitlines():
        if line.startswith("0::"):
            path = "/sys/fs/cgroup" + line[3:]
            return path if os.path.isdir(path) else "/sys/fs/cgroup"
    return None


class Pressure:
    """How close the process is to the memory it may use.

    The limits, in order: ``MEMTRIM_MEMORY_LIMIT`` (this process's RSS against
    it), the cgroup's ``memory.max`` (its ``memory.current`` against it), and
    the machine (``MemAvailable`` in ``/proc/meminfo``).
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.own_limit = parse_bytes(env.get(LIMIT_ENV, "")) if env.get(LIMIT_ENV) else None
        self.cgroup = _cgroup_dir()
        max_text = _read(os.path.join(self.cgroup, "memory.max")) if self.cgroup else None
        self.cgroup_limit = int(max_text) if max_text and max_text.isdigit() else None

    def near(self) -> str | None:
        """Why the process is close to its limit, or None."""
        if self.own_limit is not None:
            rss = _rss()
            if rss is not None and self.own_limit - rss < _margin(self.own_limit):
                return f"RSS {rss:,} B of {LIMIT_ENV}={self.own_limit:,} B"
        if self.cgroup_limit is not None and self.cgroup:
            current = _read(os.path.join(self.cgroup, "memory.current"))
            if current and current.isdigit():
                used = int(current)
                if self.cgroup_limit - used < _margin(self.cgroup_limit):
                    return f"cgroup memory {used:,} B of memory.max {self.cgroup_limit:,} B"
        info = _meminfo()
        total, available = info.get("MemTotal"), info.get("MemAvailable")
        if total and available is not None and available < min(_margin(total), total // 50 + 1):
            return f"the machine has {available:,} B of {total:,} B available"
        return None


def _margin(limit: int) -> int:
    return max(int(limit * NEAR_SHARE), min(NEAR_BYTES, limit // 4))


def _rss() -> int | None:
    found = _read("/proc/self/statm")
    if not found:
        return None
    try:
        return int(found.split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (IndexError, ValueError, OSError):
        return None


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * 1024
    return out


def start_quiet_thread(function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """A low-level thread with every signal blocked (it inherits the mask).

    A SIGTERM the kernel handed to one of memtrim's threads would run
    CPython's C handler there and leave the program's main thread blocked in
    a C call (a multiprocessing worker waiting on its queue) never to see it,
    where plain python would have died of it."""
    blocked = hasattr(signal, "pthread_sigmask")
    old = signal.pthread_sigmask(signal.SIG_SETMASK, signal.valid_signals()) if blocked else None
    try:
        _thread.start_new_thread(function, args)
    finally:
        if blocked and old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class DiskKeeper:
    """Writes ``make_capture(reason)``'s capture with ``save`` while the program runs.

    ``base``: the heap level the run's figures start from. ``make_capture``
    builds a capture of the recording so far (it is called in the watcher
    thread, with the GIL, in memtrim's own mode); ``save(capture)`` writes it
    whole or not at all.
    """

    def __init__(
        self,
        base: int,
        make_capture: Callable[[dict[str, Any]], Any],
        save: Callable[[Any], None],
        pressure: Pressure | None = None,
        children: Any = None,
        on_term: Callable[[], Callable[[], None] | None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.base = base
        self.on_tick = on_tick  # called at every tick (the SIGTERM dump's context)
        self.on_term = on_term  # -> what ends the process after a SIGTERM write, or None
        self.children = children  # polled at every tick (run/children.py)
        self.make_capture = make_capture
        self.save = save
        self.pressure = pressure or Pressure()
        self.written = 0  # captures written
        self.errors: list[str] = []
        self._next = FIRST
        self._last = float("-inf")
        self._spent = 0.0
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._near_written = False
        self._running = False

    def start(self) -> None:
        """Start watching (a low-level thread); returns once it runs.

        Start it before the run's figures begin: the thread's own start (its
        first frame's stack chunk, allocated before it can say it is
        memtrim's) is then not the program's. The thread never ends (it parks
        when stopped, and dies with the process): its end would free that
        chunk into the run's figures.
        """
        self._start = time.monotonic()
        self._running = True
        ready = threading.Event()
        start_quiet_thread(self._loop, (ready,))
        ready.wait(timeout=10)

    def stop(self) -> None:
        """Stop watching; waits for a write under way to end."""
        if self._running:
            self._stop.set()
            self._done.wait(timeout=30)
            self._running = False

    def _loop(self, ready: threading.Event) -> None:
        calltree.own_enter()  # what this thread allocates is memtrim's
        ready.set()
        try:
            while not self._stop.wait(TICK):
                self._check_term()
                if self.children is not None:
                    self.children.poll()
                self.check()
                self._tick()
        except BaseException as exc:  # the program must never see this thread fail
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._done.set()
        threading.Event().wait()  # parked for good (see start)

    def _tick(self) -> None:
        if self.on_tick is None:
            return
        try:
            self.on_tick()
        except Exception as exc:  # noted; the keeper goes on
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.on_tick = None

    def _check_term(self) -> None:
        # A SIGTERM the main thread's handler has not taken: it is in a C call
        # (this thread has the GIL, so that call released it). Write the
        # capture of this moment, then end the process as the signal would.
        end = self.on_term() if self.on_term is not None else None
        if end is None or deadline.waiting() < TERM_CLAIM or not deadline.claim():
            return
        peak = hooks.peak() - self.base
        exit = {"kind": "signal", "code": -signal.SIGTERM, "message": "SIGTERM"}
        self._write({"reason": TERM_REASON, "peak": peak, "exit": exit})
        end()

    def check(self) -> bool:
        """Write the capture if it is due; True if it was written."""
        if not calltree.is_recording():
            return False
        now = time.monotonic()
        peak = hooks.peak() - self.base
        near = None if self._near_written else self.pressure.near()
        if near is not None:
            self._near_written = True
            return self._write({"reason": "near the memory limit", "limit": near, "peak": peak})
        grew = peak >= self._next
        stale = now - max(self._last, self._start) >= REFRESH  # (before any write: since start)
        if not (grew or stale) or now - self._last < MIN_INTERVAL:
            return False
        if self._spent > BUDGET * max(now - self._start, 1e-9):
            return False
        if not grew:
            return self._write({"reason": "the program ran on", "peak": peak})
        self._next = max(int(peak * STEP), self._next)
        return self._write({"reason": "the peak grew", "peak": peak})

    def _write(self, why: dict[str, Any]) -> bool:
        began = time.monotonic()
        why["time"] = round(began - self._start, 3)
        try:
            self.save(self.make_capture(why))
            self.written += 1
            return True
        except Exception as exc:  # a failed write is noted, never the program's problem
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return False
        finally:
            self._last = time.monotonic()
            self._spent += self._last - began
