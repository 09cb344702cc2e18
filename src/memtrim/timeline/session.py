"""Memory over time: ``memory_usage()``, the exact peak of a block, named phases.

* :func:`memory_usage` is memory_profiler's function (same arguments, same
  return shapes, MiB), sampled by a native thread, running a callable once,
  and with ``max_usage=True`` the kernel's true peak.
* :func:`track` measures a block or a function: the exact heap peak and
  increment (bytes, from the engine's allocator hooks), the peak RSS, the
  duration and the samples. Blocks nest.
* :func:`phase` (or :meth:`Track.phase`) names stretches of a tracked block;
  each reports its own peaks.

How processes are watched and results shaped for ``memory_usage()`` lives in
:mod:`memtrim.timeline._usage`; starting and ending commands in
:mod:`memtrim.timeline._procs`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

from memtrim.engine.sampler import RawSample, Sampler
from memtrim.model.units import mib
from memtrim.timeline import _usage
from memtrim.timeline._shared import (
    _HIGH_WATER,
    _HeapWatch,
    check_interval,
)
from memtrim.timeline.model import (
    LocatedPeak,
    Phase,
    Sample,
    Timeline,
    add_mark,
    combined_peak,
    located_peaks,
    located_within,
    marks_from_raw,
    own_peak,
    samples_from_raw,
    within,
)

_ACTIVE: list[Track] = []  # open tracks, innermost last (phase() attaches to it)

__all__ = ["PhaseHandle", "Track", "memory_usage", "phase", "record_process", "track"]

DEFAULT_INTERVAL = 0.1
# ---------------------------------------------------------------------- phases


class PhaseHandle:
    """A named phase being measured; after it ends, :attr:`result` holds its figures.

    Use as ``with t.phase("load"):`` (ends with the block) or as a plain call
    (ends when the next phase of the same track and the same parent starts,
    when its parent phase ends, or with the track). A phase started while a
    ``with`` phase runs is that phase's child.
    """

    def __init__(
        self,
        name: str,
        owner: Track | None,
        depth: int = 0,
        parent: PhaseHandle | None = None,
    ) -> None:
        self.name = name
        self.result: Phase | None = None
        self._owner = owner
        self._depth = depth
        self._parent = parent
        self._scoped = False
        self._heap = _HeapWatch(
            owner.heap if owner is not None else True, owner.native if owner is not None else None
        )
        self._window: int | None = None
        try:
            self._window = _HIGH_WATER.open()
            self._start_ns = time.monotonic_ns()
            self._heap.begin()  # last, so that memtrim's own bookkeeping is not counted
        except BaseException:  # e.g. too many open: leave nothing behind
            if self._window is not None:
                _HIGH_WATER.discard(self._window)
            self._heap.release()
            raise

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
        """End the phase now (idempotent), and its child phases first; returns its figures."""
        if self.result is not None:
            return self.result
        if self._owner is not None:
            self._owner._end_children(self)
        try:
            peak, increment = self._heap.end()  # first: what follows is memtrim's
            end_ns = time.monotonic_ns()
        finally:
            self._heap.release()
        assert self._window is not None
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
    ``peak`` and ``increment`` are then ``None``). With ``include_children``,
    :attr:`peak_total` is the peak of the process with its children (a lower
    bound that catches any single process's spike, see docs/timeline.md).
    ``native=False`` counts Python's allocators only, not what C libraries
    allocate (default: both, unless ``MEMTRIM_PYTHON_ONLY=1``).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        interval: float | None = DEFAULT_INTERVAL,
        include_children: bool = False,
        heap: bool = True,
        native: bool | None = None,
    ) -> None:
        self.name = name
        self.native = native
        self.interval = None if interval is None else check_interval(interval)
        self.include_children = include_children
        self.heap = heap
        self.peak: int | None = None
        self.increment: int | None = None
        self.peak_rss: int | None = None
        self.peak_rss_exact = False
        self.peak_total: int | None = None
        self.duration = 0.0
        self.start = 0.0
        self.samples: list[Sample] = []
        self.phases: list[Phase] = []
        self.origin_ns = 0
        self._state = "new"
        self._open_phases: list[PhaseHandle] = []
        self._sampler: Sampler | None = None
        self._raw: list[RawSample] = []
        self._window: int | None = None
        self._listening: int | None = None
        self._windows: dict[str, tuple[float, float] | None] = {}

    # -- the block

    def __enter__(self) -> Track:
        if self._state != "new":
            raise RuntimeError("a Track measures one block; call memtrim.track() again")
        self._state = "running"
        self._heap = _HeapWatch(self.heap, self.native)
        try:
            self._begin()
        except BaseException:  # e.g. too many open: leave nothing behind
            self._abandon()
            raise
        return self

    def _begin(self) -> None:
        self._listening = _HIGH_WATER.listen()
        self._window = _HIGH_WATER.open()
        self._sampler = Sampler(
            os.getpid(),
            self.interval or 3600.0,
            children=self.include_children,
            heap=self.heap,
            marks=True,
            reset_marks=self.include_children,
        )
        self.start = time.time()
        self.origin_ns = time.monotonic_ns()
        self._raw = _keep(self._sampler.sample_now())
        if self.interval is not None:
            self._sampler.start()
        _ACTIVE.append(self)
        self._heap.begin()  # last, so that memtrim's own bookkeeping is not counted

    def _abandon(self) -> None:
        """Undo a failed :meth:`__enter__`: no thread, hook, window or open track stays."""
        if self._sampler is not None:
            self._sampler.stop()
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._window is not None:
            _HIGH_WATER.discard(self._window)
        if self._listening is not None:
            _HIGH_WATER.unlisten(self._listening)
        self._heap.release()
        self._sampler, self._window, self._listening, self._raw = None, None, None, []
        self._state = "new"

    def __exit__(self, *exc: object) -> None:
        self._finish()

    def _finish(self) -> None:
        raw: list[RawSample] = []
        end_ns = time.monotonic_ns()
        try:  # whatever happens, the thread stops and the hooks come off
            self.peak, self.increment = self._heap.end()  # first: the rest is memtrim's
            for handle in list(self._open_phases):
                handle.end()
            raw, end_ns = self._stop_sampling()
        finally:
            self._heap.release()
            if self in _ACTIVE:
                _ACTIVE.remove(self)
            assert self._window is not None and self._listening is not None
            kernel_peak = _HIGH_WATER.close(self._window)
            events = _HIGH_WATER.unlisten(self._listening)
        self._sampler, self._raw = None, []  # what a finished track keeps is its figures
        self._measure(raw, events, kernel_peak, end_ns)
        self._state = "done"

    def _measure(
        self,
        raw: list[RawSample],
        events: list[tuple[int, int | None]],
        kernel_peak: int | None,
        end_ns: int,
    ) -> None:
        """The block's figures from the samples, the marks and the kernel's peak."""
        pid = os.getpid()
        self.duration = (end_ns - self.origin_ns) / 1e9
        self.samples = [
            _relative_heap(s, self._heap.base) for s in samples_from_raw(raw, self.origin_ns)
        ]
        marks = marks_from_raw(raw, self.origin_ns)
        for t_ns, mark in events:
            add_mark(marks, pid, (t_ns - self.origin_ns) / 1e9, mark)
        located = located_peaks(marks, [s.time for s in self.samples])
        own = own_peak(self.samples, located, pid, kernel_peak)
        self.peak_rss_exact = kernel_peak is not None
        self.peak_rss = None if own is None else own.value
        self._windows["rss"] = None if own is None else own.window
        if self.include_children:
            total = combined_peak(self.samples, located, pid, kernel_peak)
            self.peak_total = None if total is None else total.value
            self._windows["total"] = None if total is None else total.window
        self.phases = [self._phase_figures(p, located, pid) for p in self.phases]

    def _phase_figures(self, result: Phase, located: list[LocatedPeak], pid: int) -> Phase:
        """A phase's peak RSS is the highest of its kernel mark, its samples and the
        marks located inside it (the mark and a sample can differ by a few pages);
        with children, also its combined peak."""
        inside = within(self.samples, result.start, result.end)
        here = located_within(located, result.start, result.end)
        own = own_peak(inside, here, pid, result.peak_rss)
        peak_rss = None if own is None else own.value
        total = None
        if self.include_children:
            combined = combined_peak(inside, here, pid, peak_rss)
            total = None if combined is None else combined.value
        return dataclasses.replace(result, peak_rss=peak_rss, peak_total=total)

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
        parent = next((h for h in reversed(self._open_phases) if h._scoped), None)
        self._end_plain_siblings(parent)  # a plain phase lasts until the next one starts
        depth = 0 if parent is None else parent._depth + 1
        handle = PhaseHandle(name, self, depth=depth, parent=parent)
        self._open_phases.append(handle)
        return handle

    def _end_plain_siblings(self, parent: PhaseHandle | None) -> None:
        # a function of its own: the ended handles are freed when it returns,
        # before the next phase starts counting
        for handle in [h for h in self._open_phases if not h._scoped and h._parent is parent]:
            handle.end()

    def _end_children(self, parent: PhaseHandle) -> None:
        for handle in [h for h in self._open_phases if h._parent is parent]:
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
        """The block as a :class:`~memtrim.timeline.model.Timeline` (to save or plot).

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
            peak_rss_window=self._windows.get("rss") if self.peak_rss_exact else None,
            peak_total=self.peak_total,
            peak_total_window=self._windows.get("total"),
        )

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        if self._state != "done":
            return f"<Track{label} {self._state}>"
        rss = "unknown" if self.peak_rss is None else mib(self.peak_rss)
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
    native: bool | None = None,
) -> Any:
    """Measure a block (``with track() as t``) or each call of a function (``@track``).

    ``track("name")`` names the block. See :class:`Track` for the results.
    """
    if isinstance(func, str):
        name, func = func, None
    tracker = Track(
        name, interval=interval, include_children=include_children, heap=heap, native=native
    )
    return tracker if func is None else tracker(func)


def _mib_text(value: int | None) -> str:
    return "not measured" if value is None else mib(value, 3)


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
    native: bool | None = None,
) -> Any:
    """Memory of a process or a function over time, in MiB (memory_profiler's function).

    ``proc``: ``-1`` (this process), a PID (an int, or a string of digits),
    a callable or ``(f, args, kwargs)`` (run once, here), a command string or
    argument list (started in its own session, watched until it ends, its
    output untouched) or a :class:`subprocess.Popen`. Returns a list of MiB
    (``(MiB, time)`` with ``timestamps``; ``[MiB, child MiB, ...]`` per
    sample with ``multiprocess``, one column per child in the order they
    were first seen, 0.0 while a child does not run, the PIDs in the
    result's ``pids`` attribute), or with ``max_usage`` the peak alone: the
    kernel's true peak, which catches spikes shorter than ``interval``.
    ``retval`` returns ``(usage, result)``; ``stream`` gets mprof's
    ``MEM``/``CHLD`` lines instead (returns ``None``). A PID without
    ``timeout`` gives one sample. ``backend="tracemalloc"`` measures the
    Python heap of this process exactly instead of its RSS; ``native=False``
    leaves what C libraries allocate out of that heap (RSS always has it).
    """

    return _usage.memory_usage(
        proc,
        interval=interval,
        timeout=timeout,
        timestamps=timestamps,
        include_children=include_children,
        multiprocess=multiprocess,
        max_usage=max_usage,
        retval=retval,
        stream=stream,
        backend=backend,
        max_iterations=max_iterations,
        native=native,
    )


def record_process(
    pid: int,
    *,
    interval: float = DEFAULT_INTERVAL,
    include_children: bool = False,
    multiprocess: bool = False,
    timeout: float | None = None,
) -> Timeline:
    """Watch a running process until it ends, ``timeout`` passes or Ctrl-C; its timeline.

    The peak RSS is the kernel's mark if it rose while watched (read with
    every sample and poll while the process lives; it is not reset), or the
    highest sample if that is higher; otherwise only the samples tell.
    """

    return _usage.record_process(
        pid,
        interval=interval,
        include_children=include_children,
        multiprocess=multiprocess,
        timeout=timeout,
    )
