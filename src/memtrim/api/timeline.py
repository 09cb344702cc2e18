"""Memory over time: ``memory_usage()``, the exact peak of a block, named phases.

* :func:`memory_usage` is memory_profiler's function (same arguments, same
  return shapes, MiB), sampled by a native thread, running a callable once,
  and with ``max_usage=True`` the kernel's true peak.
* :func:`track` measures a block or a function: the exact heap peak and
  increment (bytes, from the engine's allocator hooks), the peak RSS, the
  duration and the samples. Blocks nest.
* :func:`phase` (or :meth:`Track.phase`) names stretches of a tracked block;
  each reports its own peaks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from memtrim.analysis.timeline import (
    Phase,
    Sample,
    Timeline,
    peak_of,
    samples_from_raw,
    to_mib,
    within,
)
from memtrim.engine import heap
from memtrim.engine.sampler import RawSample, Sampler, read_peak_rss, reset_peak_rss

__all__ = ["PhaseHandle", "Track", "memory_usage", "phase", "record_process", "track"]

DEFAULT_INTERVAL = 0.1
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
}


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
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, list[Any]] = {}  # id -> [resettable, mark at open, best]
        self._next = 0

    def _fold(self) -> None:
        mark = read_peak_rss()
        for window in self._open.values():
            if window[0] and mark is not None:
                window[2] = max(window[2], mark)

    def open(self) -> int:
        """Start a window; returns its id."""
        with self._lock:
            self._fold()
            resettable = reset_peak_rss()
            mark = read_peak_rss()
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


_HIGH_WATER = _HighWater()
_ACTIVE: list[Track] = []  # open tracks, innermost last (phase() attaches to it)


# ------------------------------------------------------------ exact heap peaks


class _HeapWatch:
    """The engine's exact peak of a block: hooks held, a peak watch from a base level.

    Disabled (``enabled=False``), it holds nothing and reports ``None``.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.base = 0
        self._watch = -1
        self._released = False
        if enabled:
            heap.acquire()

    def begin(self) -> None:
        """Start counting now: call it last, after memtrim's own bookkeeping."""
        if self.enabled:
            self.base = heap.level()
            self._watch = heap.watch_begin()

    def peak(self) -> int | None:
        """The highest level above the base so far."""
        return heap.watch_peak(self._watch) - self.base if self.enabled else None

    def increment(self) -> int | None:
        """The level now minus the base."""
        return heap.level() - self.base if self.enabled else None

    def end(self) -> tuple[int | None, int | None]:
        """Stop: ``(peak, increment)``. Call it first, before memtrim's bookkeeping."""
        if not self.enabled:
            return None, None
        peak = heap.watch_end(self._watch) - self.base
        increment = heap.level() - self.base
        return peak, increment

    def release(self) -> None:
        """Let the hooks go (after :meth:`end`; once only)."""
        if self.enabled and not self._released:
            self._released = True
            heap.release()


# ---------------------------------------------------------------------- phases


class PhaseHandle:
    """A named phase being measured; after it ends, :attr:`result` holds its figures.

    Use as ``with t.phase("load"):`` (ends with the block) or as a plain call
    (ends when the next phase of the same track starts, or with the track).
    """

    def __init__(self, name: str, owner: Track | None, depth: int = 0) -> None:
        self.name = name
        self.result: Phase | None = None
        self._owner = owner
        self._depth = depth
        self._scoped = False
        self._heap = _HeapWatch(owner.heap if owner is not None else True)
        self._window = _HIGH_WATER.open()
        self._start_ns = time.monotonic_ns()
        self._heap.begin()  # last, so that memtrim's own bookkeeping is not counted

    def __enter__(self) -> PhaseHandle:
        self._scoped = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    @property
    def ended(self) -> bool:
        """Has the phase ended?"""
        return self.result is not None

    @property
    def peak(self) -> int | None:
        """Highest heap level above the level at the phase's start (bytes, exact)."""
        return self._heap.peak() if self.result is None else self.result.peak_heap

    @property
    def increment(self) -> int | None:
        """Heap level at the end minus at the start (bytes, exact)."""
        return self._heap.increment() if self.result is None else self.result.increment

    @property
    def peak_rss(self) -> int | None:
        """Highest RSS of the process during the phase (bytes), when known."""
        return None if self.result is None else self.result.peak_rss

    def end(self) -> Phase:
        """End the phase now (idempotent); returns its figures."""
        if self.result is not None:
            return self.result
        try:
            peak, increment = self._heap.end()  # first: what follows is memtrim's
            end_ns = time.monotonic_ns()
        finally:
            self._heap.release()
        peak_rss = _HIGH_WATER.close(self._window)
        origin = self._owner.origin_ns if self._owner else self._start_ns
        self.result = Phase(
            self.name,
            (self._start_ns - origin) / 1e9,
            (end_ns - origin) / 1e9,
            peak_heap=peak,
            increment=increment,
            peak_rss=peak_rss,
            peak_rss_exact=peak_rss is not None,
            depth=self._depth,
        )
        if self._owner is not None:
            self._owner._phase_ended(self)
        return self.result

    def __repr__(self) -> str:
        state = "ended" if self.ended else "running"
        return f"<PhaseHandle {self.name!r} {state}: peak {_mib_text(self.peak)}>"


def phase(name: str) -> PhaseHandle:
    """Start the named phase in the innermost open :func:`track` (or a recording).

    With no track open, the phase is measured on its own: its handle still
    reports its peak and increment when it ends.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a phase needs a non-empty name, got {name!r}")
    if _ACTIVE:
        return _ACTIVE[-1].phase(name)
    return PhaseHandle(name, None)


# ---------------------------------------------------------------------- tracks


class Track:
    """The memory of a block: ``with memtrim.track() as t: ...`` or ``@memtrim.track``.

    After the block: :attr:`peak` and :attr:`increment` (bytes, exact heap
    accounting: the highest level above the level at entry, and the change),
    :attr:`peak_rss` (the process's highest RSS during the block, from the
    kernel's high-water mark when available), :attr:`duration` (seconds),
    :attr:`samples` (taken every ``interval`` seconds by a native thread; pass
    ``interval=None`` for only the first and last) and :attr:`phases`.
    ``heap=False`` leaves the allocator hooks out (no slowdown of allocations;
    ``peak`` and ``increment`` are then ``None``).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        interval: float | None = DEFAULT_INTERVAL,
        include_children: bool = False,
        heap: bool = True,
    ) -> None:
        self.name = name
        self.interval = None if interval is None else check_interval(interval)
        self.include_children = include_children
        self.heap = heap
        self.peak: int | None = None
        self.increment: int | None = None
        self.peak_rss: int | None = None
        self.peak_rss_exact = False
        self.duration = 0.0
        self.start = 0.0
        self.samples: list[Sample] = []
        self.phases: list[Phase] = []
        self.origin_ns = 0
        self._state = "new"
        self._open_phases: list[PhaseHandle] = []
        self._sampler: Sampler | None = None
        self._raw: list[RawSample] = []

    # -- the block

    def __enter__(self) -> Track:
        if self._state != "new":
            raise RuntimeError("a Track measures one block; call memtrim.track() again")
        self._state = "running"
        self._heap = _HeapWatch(self.heap)
        self._window = _HIGH_WATER.open()
        self._sampler = Sampler(
            os.getpid(),
            self.interval or 3600.0,
            children=self.include_children,
            heap=self.heap,
        )
        self.start = time.time()
        self.origin_ns = time.monotonic_ns()
        self._raw = _keep(self._sampler.sample_now())
        if self.interval is not None:
            self._sampler.start()
        _ACTIVE.append(self)
        self._heap.begin()  # last, so that memtrim's own bookkeeping is not counted
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def _finish(self) -> None:
        try:  # whatever happens, the thread stops and the hooks come off
            self.peak, self.increment = self._heap.end()  # first: the rest is memtrim's
            for handle in list(self._open_phases):
                handle.end()
            raw, end_ns = self._stop_sampling()
        finally:
            self._heap.release()
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        kernel_peak = _HIGH_WATER.close(self._window)
        self.duration = (end_ns - self.origin_ns) / 1e9
        self.samples = [
            _relative_heap(s, self._heap.base) for s in samples_from_raw(raw, self.origin_ns)
        ]
        self.phases = [_with_sampled_peak(p, self.samples) for p in self.phases]
        sampled = peak_of(self.samples, "rss")
        self.peak_rss_exact = kernel_peak is not None
        candidates = [v for v in (kernel_peak, sampled and sampled.value) if v is not None]
        self.peak_rss = max(candidates) if candidates else None
        self._state = "done"

    def _stop_sampling(self) -> tuple[list[RawSample], int]:
        sampler = self._sampler
        assert sampler is not None
        try:
            last = sampler.sample_now()
        finally:
            sampler.stop()
        end_ns = time.monotonic_ns()
        return [*self._raw, *sampler.drain(), *_keep(last)], end_ns

    # -- phases

    def phase(self, name: str) -> PhaseHandle:
        """Start a named phase of this block (see :class:`PhaseHandle`)."""
        if self._state != "running":
            raise RuntimeError("phases can only be started while the track's block runs")
        self._end_plain_phases()  # a plain phase lasts until the next one starts
        handle = PhaseHandle(name, self, depth=len(self._open_phases))
        self._open_phases.append(handle)
        return handle

    def _end_plain_phases(self) -> None:
        # a function of its own: the ended handles are freed when it returns,
        # before the next phase starts counting
        for handle in [h for h in self._open_phases if not h._scoped]:
            handle.end()

    def _phase_ended(self, handle: PhaseHandle) -> None:
        if handle in self._open_phases:
            self._open_phases.remove(handle)
        assert handle.result is not None
        self.phases.append(handle.result)

    # -- as a decorator

    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate ``func``: each call is tracked; ``wrapper.last`` is the latest Track."""
        options = {
            "interval": self.interval,
            "include_children": self.include_children,
            "heap": self.heap,
        }
        name = self.name or getattr(func, "__qualname__", None)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tracked = Track(name, **options)
            try:
                with tracked:
                    return func(*args, **kwargs)
            finally:
                wrapper.last = tracked  # type: ignore[attr-defined]

        wrapper.last = None  # type: ignore[attr-defined]
        return wrapper

    # -- results

    @property
    def running(self) -> bool:
        """Is the block still running?"""
        return self._state == "running"

    def current_peak(self) -> int | None:
        """While the block runs: the exact heap peak so far (bytes)."""
        return self._heap.peak() if self._state == "running" else self.peak

    def timeline(
        self,
        command: Sequence[str] = (),
        exit_code: int | None = None,
        multiprocess: bool = False,
        include_children: bool | None = None,
    ) -> Timeline:
        """The block as a :class:`~memtrim.analysis.timeline.Timeline` (to save or plot).

        ``multiprocess``/``include_children`` say how children are meant to be
        shown: one series each, and/or added to the process's own memory.
        """
        if include_children is None:
            include_children = self.include_children
        return Timeline(
            samples=tuple(self.samples),
            phases=tuple(sorted(self.phases, key=lambda p: (p.start, p.depth))),
            start=self.start,
            interval=self.interval or 0.0,
            pid=os.getpid(),
            command=tuple(command),
            include_children=include_children,
            multiprocess=multiprocess,
            peak_rss=self.peak_rss if self.peak_rss_exact else None,
            exit_code=exit_code,
            duration=self.duration,
            meta={"name": self.name} if self.name else {},
        )

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        if self._state != "done":
            return f"<Track{label} {self._state}>"
        rss = "unknown" if self.peak_rss is None else f"{to_mib(self.peak_rss):.1f} MiB"
        return (
            f"<Track{label}: peak {_mib_text(self.peak)}, increment "
            f"{_mib_text(self.increment)}, peak RSS {rss}, {self.duration:.3f} s, "
            f"{len(self.samples)} samples, {len(self.phases)} phases>"
        )


def track(
    func: Callable[..., Any] | str | None = None,
    /,
    *,
    name: str | None = None,
    interval: float | None = DEFAULT_INTERVAL,
    include_children: bool = False,
    heap: bool = True,
) -> Any:
    """Measure a block (``with track() as t``) or each call of a function (``@track``).

    ``track("name")`` names the block. See :class:`Track` for the results.
    """
    if isinstance(func, str):
        name, func = func, None
    tracker = Track(name, interval=interval, include_children=include_children, heap=heap)
    return tracker if func is None else tracker(func)


def _mib_text(value: int | None) -> str:
    return "not measured" if value is None else f"{to_mib(value):.3f} MiB"


def _with_sampled_peak(result: Phase, samples: list[Sample]) -> Phase:
    """The kernel's mark and the samples are read through different counters
    (the mark can trail a sample by a few pages): a phase's peak RSS is the
    higher of its mark and its samples."""
    sampled = peak_of(within(samples, result.start, result.end), "rss")
    if sampled is None or (result.peak_rss is not None and result.peak_rss >= sampled.value):
        return result
    return dataclasses.replace(result, peak_rss=sampled.value)


def _keep(sample: RawSample | None) -> list[RawSample]:
    return [] if sample is None else [sample]


def _relative_heap(sample: Sample, base: int) -> Sample:
    if sample.heap is None:
        return sample
    return Sample(sample.time, sample.rss, sample.heap - base, sample.children)


# ----------------------------------------------------------------- memory_usage


def memory_usage(
    proc: Any = -1,
    interval: float = DEFAULT_INTERVAL,
    timeout: float | None = None,
    timestamps: bool = False,
    include_children: bool = False,
    multiprocess: bool = False,
    max_usage: bool = False,
    retval: bool = False,
    stream: IO[str] | None = None,
    backend: str | None = None,
    max_iterations: int | None = None,
) -> Any:
    """Memory of a process or a function over time, in MiB (memory_profiler's function).

    ``proc``: ``-1`` (this process), a PID, a callable or ``(f, args, kwargs)``
    (run once, here), a command string or argument list (started, watched
    until it ends, its output untouched) or a :class:`subprocess.Popen`.
    Returns a list of MiB (``(MiB, time)`` with ``timestamps``; ``[MiB, child
    MiB, ...]`` per sample with ``multiprocess``), or with ``max_usage`` the
    peak alone: for this process the kernel's true peak, which catches
    spikes shorter than ``interval``. ``retval`` returns ``(usage,
    result)``; ``stream`` gets mprof's ``MEM``/``CHLD`` lines instead
    (returns ``None``). A PID without ``timeout`` gives one sample.
    """
    interval = check_interval(interval)
    if timeout is not None:
        timeout = check_interval(timeout, "timeout")
    if max_iterations is not None and (not isinstance(max_iterations, int) or max_iterations < 1):
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    options = _Options(
        interval=interval,
        children=include_children or multiprocess,
        metric=check_backend(backend),
        max_usage=max_usage,
    )
    target = _target(proc)
    returned = None
    if target[0] == "call":
        observed, returned = _watch_call(target[1], target[2], target[3], options)
    elif target[0] == "pid":
        observed = _watch_pid(target[1], timeout, options)
    else:
        observed = _watch_command(target[1], timeout, options)
    if stream is not None:
        _write_stream(stream, observed, include_children, multiprocess)
        return None
    result = _shape(observed, include_children, multiprocess, timestamps, max_usage)
    return (result, returned) if retval else result


class _Options:
    __slots__ = ("children", "interval", "max_usage", "metric")

    def __init__(self, interval: float, children: bool, metric: str, max_usage: bool) -> None:
        self.interval = interval
        self.children = children
        self.metric = metric
        self.max_usage = max_usage


class _Observed:
    """What a watch saw: samples, their epoch origin, and the kernel's peak if known."""

    __slots__ = ("kernel_peak", "samples", "wall0")

    def __init__(self, samples: list[Sample], wall0: float, kernel_peak: int | None) -> None:
        self.samples = samples
        self.wall0 = wall0
        self.kernel_peak = kernel_peak


def _target(proc: Any) -> tuple[Any, ...]:
    if isinstance(proc, subprocess.Popen):
        return ("command", proc)
    if callable(proc):
        return ("call", proc, (), {})
    if isinstance(proc, bool):
        raise TypeError(f"proc must be -1, a PID, a callable or a command, got {proc!r}")
    if isinstance(proc, int):
        return ("pid", proc)
    if isinstance(proc, str | os.PathLike):
        argv = shlex.split(os.fspath(proc)) if isinstance(proc, str) else [os.fspath(proc)]
        if not argv:
            raise ValueError("the command to run is empty")
        return ("command", argv)
    if isinstance(proc, list | tuple) and proc:
        if callable(proc[0]):
            return _call_spec(proc)
        if all(isinstance(arg, str | os.PathLike) for arg in proc):
            return ("command", [os.fspath(arg) for arg in proc])
    raise ValueError(
        f"proc must be -1, a PID, a callable, (f, args, kwargs), a command or a Popen; got {proc!r}"
    )


def _call_spec(proc: Sequence[Any]) -> tuple[Any, ...]:
    if len(proc) > 3:
        raise ValueError("a function is given as (f,), (f, args) or (f, args, kwargs)")
    args = proc[1] if len(proc) > 1 else ()
    kwargs = proc[2] if len(proc) > 2 else {}
    return ("call", proc[0], tuple(args), dict(kwargs))


def _watch_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: _Options
) -> tuple[_Observed, Any]:
    """Run ``func`` once in this thread while the native thread samples."""
    sampler = Sampler(
        os.getpid(), options.interval, children=options.children, metric=options.metric
    )
    kernel = options.max_usage and options.metric == "rss"
    window = _HIGH_WATER.open() if kernel else None
    origin_ns, wall0 = time.monotonic_ns(), time.time()
    raw = _keep(sampler.sample_now())
    sampler.start()
    try:
        returned = func(*args, **kwargs)
    finally:
        last = sampler.sample_now()
        sampler.stop()
        raw += [*sampler.drain(), *_keep(last)]
        kernel_peak = _HIGH_WATER.close(window) if window is not None else None
    return _Observed(samples_from_raw(raw, origin_ns), wall0, kernel_peak), returned


def _check_pid(pid: int, metric: str) -> None:
    import psutil

    try:
        process = psutil.Process(pid)
        if metric == "rss":
            process.memory_info()
        else:
            process.memory_full_info()
    except psutil.NoSuchProcess:
        raise ValueError(f"no process with PID {pid}") from None
    except psutil.AccessDenied:
        raise ValueError(f"not allowed to read the memory of process {pid}") from None


def _watch_pid(pid: int, timeout: float | None, options: _Options) -> _Observed:
    """Sample an existing process: once, or ``round(timeout / interval)`` times."""
    pid = os.getpid() if pid == -1 else pid
    if pid <= 0:
        raise ValueError(f"bad PID {pid}: give -1 (this process) or a positive PID")
    _check_pid(pid, options.metric)
    count = 1 if timeout is None else max(1, round(timeout / options.interval))
    own = pid == os.getpid()
    window = _HIGH_WATER.open() if own and options.max_usage and options.metric == "rss" else None
    watch = _ProcessWatch(pid, options, max_samples=count)
    observed = watch.run(lambda: False, deadline=None)
    if window is not None:
        observed.kernel_peak = _HIGH_WATER.close(window)
    return observed


def _watch_command(command: Any, timeout: float | None, options: _Options) -> _Observed:
    """Start ``command`` (or take a Popen) and sample it until it ends or ``timeout``."""
    ours = not isinstance(command, subprocess.Popen)
    popen = _start(command) if ours else command
    try:
        watch = _ProcessWatch(popen.pid, options, max_samples=None)
        deadline = None if timeout is None else time.monotonic() + timeout
        return watch.run(lambda: popen.poll() is not None, deadline)
    finally:
        if ours:
            _end(popen)


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv)
    except OSError as exc:
        raise ValueError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None


def _end(popen: subprocess.Popen[bytes]) -> None:
    """Leave no child behind: ask, then force, then reap."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            popen.kill()
    popen.wait()


class _ProcessWatch:
    """Samples another process (or this one, from the caller's thread) until told to stop."""

    def __init__(
        self, pid: int, options: _Options, max_samples: int | None, stop_on_interrupt: bool = False
    ) -> None:
        self.pid = pid
        self.options = options
        self.max_samples = max_samples
        self.stop_on_interrupt = stop_on_interrupt
        self.duration = 0.0
        self.sampler = Sampler(
            pid, options.interval, children=options.children, metric=options.metric
        )
        self.mark_at_start = self._mark()
        self.last_mark = self.mark_at_start

    def _mark(self) -> int | None:
        if not (self.options.max_usage and self.options.metric == "rss"):
            return None
        return read_peak_rss(self.pid)

    def run(self, finished: Callable[[], bool], deadline: float | None) -> _Observed:
        origin_ns, wall0 = time.monotonic_ns(), time.time()
        raw = _keep(self.sampler.sample_now())
        if raw and self.max_samples != 1:
            raw += self._sample_until(finished, deadline)
        self.duration = (time.monotonic_ns() - origin_ns) / 1e9
        return _Observed(samples_from_raw(raw, origin_ns), wall0, self._kernel_peak())

    def _sample_until(
        self, finished: Callable[[], bool], deadline: float | None
    ) -> list[RawSample]:
        sampler = self.sampler
        sampler.start()
        poll = min(self.options.interval, 0.05)
        try:
            while not (finished() or sampler.process_gone):
                if self.max_samples is not None and 1 + sampler.count >= self.max_samples:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                mark = self._mark()
                self.last_mark = mark if mark is not None else self.last_mark
                time.sleep(poll)
        except KeyboardInterrupt:
            if not self.stop_on_interrupt:
                raise
        finally:
            sampler.stop()
        taken = sampler.drain()
        return taken[: None if self.max_samples is None else self.max_samples - 1]

    def _kernel_peak(self) -> int | None:
        """The peak during the watch, if the process's mark rose while we watched."""
        start, last = self.mark_at_start, self.last_mark
        if start is not None and last is not None and last > start:
            return last
        return None


def record_process(
    pid: int,
    *,
    interval: float = DEFAULT_INTERVAL,
    include_children: bool = False,
    multiprocess: bool = False,
    timeout: float | None = None,
) -> Timeline:
    """Watch a running process until it ends, ``timeout`` passes or Ctrl-C; its timeline.

    The peak RSS is the kernel's mark if it rose while watched (read at every
    poll while the process lives); otherwise only the samples tell.
    """
    interval = check_interval(interval)
    if timeout is not None:
        timeout = check_interval(timeout, "timeout")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"bad PID {pid!r}: give a positive whole number")
    _check_pid(pid, "rss")
    options = _Options(interval, include_children or multiprocess, "rss", max_usage=True)
    watch = _ProcessWatch(pid, options, None, stop_on_interrupt=True)
    command = _command_line(pid)
    deadline = None if timeout is None else time.monotonic() + timeout
    observed = watch.run(lambda: False, deadline)
    return Timeline(
        samples=tuple(observed.samples),
        start=observed.wall0,
        interval=interval,
        pid=pid,
        command=command,
        include_children=include_children,
        multiprocess=multiprocess,
        peak_rss=observed.kernel_peak,
        duration=watch.duration,
    )


def _command_line(pid: int) -> tuple[str, ...]:
    import psutil

    try:
        return tuple(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ()


def _series_value(sample: Sample, include_children: bool) -> int:
    return sample.total if include_children else sample.rss


def _max_usage(observed: _Observed, include_children: bool) -> tuple[int | None, float | None]:
    sampled = max(
        ((_series_value(s, include_children), s.time) for s in observed.samples),
        default=(None, None),
    )
    value, at = sampled
    if observed.kernel_peak is not None and (value is None or observed.kernel_peak > value):
        return observed.kernel_peak, None
    return value, at


def _shape(
    observed: _Observed,
    include_children: bool,
    multiprocess: bool,
    timestamps: bool,
    max_usage: bool,
) -> Any:
    if max_usage:
        value, at = _max_usage(observed, include_children)
        mib = -1.0 if value is None else to_mib(value)  # memory_profiler's "nothing seen"
        if timestamps:
            return (mib, observed.wall0 + at if at is not None else time.time())
        return mib
    series: list[Any] = []
    for sample in observed.samples:
        value: Any = to_mib(_series_value(sample, include_children))
        if timestamps:
            value = (value, observed.wall0 + sample.time)
        if multiprocess:
            value = [value, *(to_mib(v) for _, v in sample.children)]
        series.append(value)
    return series


def _write_stream(
    stream: IO[str], observed: _Observed, include_children: bool, multiprocess: bool
) -> None:
    """mprof's text lines: ``MEM <MiB> <epoch>`` and ``CHLD <pid> <MiB> <epoch>``."""
    for sample in observed.samples:
        when = observed.wall0 + sample.time
        stream.write(f"MEM {to_mib(_series_value(sample, include_children)):.6f} {when:.4f}\n")
        if multiprocess:
            for pid, value in sample.children:
                stream.write(f"CHLD {pid} {to_mib(value):.6f} {when:.4f}\n")
    stream.flush()
