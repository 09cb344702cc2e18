"""How ``memory_usage()`` and ``record_process()`` watch a callable, a PID, a command or a Popen.

The public functions, their docstrings and the argument checks shared with
:func:`memtrim.track` are in :mod:`memtrim.timeline.session`; starting and ending
commands is :mod:`memtrim.timeline._procs`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from memtrim.engine.sampler import RawMark, RawSample, Sampler
from memtrim.timeline import _procs
from memtrim.timeline import _shared as _tl
from memtrim.timeline.model import (
    Sample,
    Timeline,
    TruePeak,
    add_mark,
    combined_peak,
    insert_true_peak,
    located_peaks,
    marks_from_raw,
    own_peak,
    samples_from_raw,
    to_mib,
)

_Run = tuple[list[RawSample], int, float]  # raw samples, their monotonic origin, its epoch


class UsageSeries(list):  # type: ignore[type-arg]
    """``memory_usage(..., multiprocess=True)``: memory_profiler's list of
    ``[main, child, ...]`` rows, and :attr:`pids`, the PID of each column."""

    pids: tuple[int, ...] = ()


class _Options:
    __slots__ = ("children", "interval", "max_usage", "metric", "native")

    def __init__(
        self,
        interval: float,
        children: bool,
        metric: str,
        max_usage: bool,
        native: bool | None = None,
    ) -> None:
        self.interval = interval
        self.children = children
        self.metric = metric
        self.max_usage = max_usage
        self.native = native  # the heap series: count C libraries' allocations too

    @property
    def marks(self) -> bool:
        """Read the kernel's marks with every sample: the RSS peak between two
        samples goes into the series (and is ``max_usage``), so that the
        series's maximum is the peak even for a call shorter than a sample."""
        return self.metric == "rss"


class _Observed:
    """What a watch saw: samples, their epoch origin, the watched pid and its true peaks."""

    __slots__ = ("own", "pid", "samples", "total", "wall0")

    def __init__(
        self,
        samples: list[Sample],
        wall0: float,
        pid: int,
        own: TruePeak | None,
        total: TruePeak | None,
    ) -> None:
        self.samples = samples
        self.wall0 = wall0
        self.pid = pid
        self.own = own
        self.total = total


def memory_usage(
    proc: Any,
    *,
    interval: Any,
    timeout: Any,
    timestamps: bool,
    include_children: bool,
    multiprocess: bool,
    max_usage: bool,
    retval: bool,
    stream: IO[str] | None,
    backend: Any,
    max_iterations: Any,
    native: bool | None = None,
) -> Any:
    """See :func:`memtrim.timeline.session.memory_usage`."""
    interval = _tl.check_interval(interval)
    if timeout is not None:
        timeout = _tl.check_interval(timeout, "timeout")
    if max_iterations is not None and (
        isinstance(max_iterations, bool)
        or not isinstance(max_iterations, int)
        or max_iterations < 1
    ):
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    options = _Options(
        interval, include_children or multiprocess, _tl.check_backend(backend), max_usage, native
    )
    target = parse_target(proc)
    if options.metric == _tl.HEAP_METRIC:
        _check_heap_target(target, options)
    returned = None
    if target[0] == "call":
        observed, returned = _watch_call(target[1], target[2], target[3], options)
    elif target[0] == "pid":
        observed = _watch_pid(target[1], timeout, options)
    elif target[0] == "popen":
        observed = _watch_popen(target[1], timeout, options)
    else:
        observed = _watch_command(target[1], timeout, options)
    if stream is not None:
        _write_stream(stream, observed, include_children, multiprocess)
        return None
    result = _shape(observed, include_children, multiprocess, timestamps, max_usage)
    return (result, returned) if retval else result


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# ------------------------------------------------------------------ targets


def parse_target(proc: Any) -> tuple[Any, ...]:
    """What ``proc`` names: ``("call", f, args, kwargs)``, ``("pid", pid)``,
    ``("command", argv)`` or ``("popen", popen)``; :class:`ValueError` otherwise.

    As memory_profiler documents, a string of digits is a PID; any other
    string is a command line, split like a shell would.
    """
    if isinstance(proc, subprocess.Popen):
        return ("popen", proc)
    if isinstance(proc, bool):
        raise ValueError(f"proc must be -1, a PID, a callable, a command or a Popen; got {proc!r}")
    if callable(proc):
        return ("call", proc, (), {})
    if isinstance(proc, int):
        return ("pid", proc)
    if isinstance(proc, str):
        text = proc.strip()
        if text.isascii() and text.isdigit():
            return ("pid", int(text))
        argv = shlex.split(proc)
        if not argv:
            raise ValueError("the command to run is empty")
        return ("command", argv)
    if isinstance(proc, os.PathLike):
        return ("command", [os.fspath(proc)])
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
    if not isinstance(args, list | tuple):
        raise ValueError(f"in (f, args, kwargs), args must be a tuple or a list, got {args!r}")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(
            f"in (f, args, kwargs), kwargs must be a dict of keyword arguments, got {kwargs!r}"
        )
    return ("call", proc[0], tuple(args), dict(kwargs))


def _check_heap_target(target: tuple[Any, ...], options: _Options) -> None:
    own = target[0] == "call" or (target[0] == "pid" and target[1] in (-1, os.getpid()))
    if not own or options.children:
        raise ValueError(
            "backend='tracemalloc' measures the Python heap of this process: give a callable "
            "or -1, without include_children or multiprocess"
        )


# ------------------------------------------------------------------ watches


class _KernelWindow:
    """This process's kernel peak over a block, and the log of its reads and resets."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.peak: int | None = None
        self.events: list[tuple[int, int | None]] = []

    def __enter__(self) -> _KernelWindow:
        if self.enabled:
            self._listening = _tl._HIGH_WATER.listen()
            try:
                self._window = _tl._HIGH_WATER.open()
            except BaseException:
                _tl._HIGH_WATER.unlisten(self._listening)
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.peak = _tl._HIGH_WATER.close(self._window)
            self.events = _tl._HIGH_WATER.unlisten(self._listening)


def _watch_call(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], options: _Options
) -> tuple[_Observed, Any]:
    """Run ``func`` once in this thread while the native thread samples."""
    if options.metric == _tl.HEAP_METRIC:
        return _watch_heap(func, args, kwargs, options.interval, options.native)
    pid = os.getpid()
    sampler = Sampler(
        pid,
        options.interval,
        children=options.children,
        metric=options.metric,
        marks=options.marks,
        reset_marks=options.marks and options.children,  # the call's children are ours
    )
    with _KernelWindow(options.marks) as window:
        origin_ns, wall0 = time.monotonic_ns(), time.time()
        raw = _keep(sampler.sample_now())
        sampler.start()
        try:
            returned = func(*args, **kwargs)
        finally:
            last = sampler.sample_now()
            sampler.stop()
            raw += [*sampler.drain(), *_keep(last)]
    run = (raw, origin_ns, wall0)
    return _observe(run, pid, options, own_events=window.events, exact=window.peak), returned


def _watch_heap(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    interval: float,
    native: bool | None = None,
) -> tuple[_Observed, Any]:
    """``backend="tracemalloc"``: the heap allocated since the call began, from
    the engine's hooks (exact), sampled by the native thread; the peak exact."""
    pid = os.getpid()
    sampler = Sampler(pid, interval, heap=True)
    hooks = _tl._HeapWatch(True, native)  # the hooks go in here
    origin_ns, wall0 = time.monotonic_ns(), time.time()
    try:
        sampler.start()
        hooks.begin()
        begin_ns = time.monotonic_ns()
        try:
            returned = func(*args, **kwargs)
        finally:
            peak, increment = hooks.end() if hooks.begun else (None, None)
            end_ns = time.monotonic_ns()
            sampler.stop()
    finally:
        sampler.stop()
        hooks.release()
    assert peak is not None and increment is not None
    taken = [
        Sample(s.time, s.heap - hooks.base)
        for s in samples_from_raw(sampler.drain(), origin_ns)
        if s.heap is not None and s.time * 1e9 >= begin_ns - origin_ns
    ]
    samples = [
        Sample((begin_ns - origin_ns) / 1e9, 0),
        *taken,
        Sample((end_ns - origin_ns) / 1e9, increment),
    ]
    observed = _Observed(samples, wall0, pid, own_peak(samples, (), pid, peak), None)
    return observed, returned


def _watch_pid(pid: int, timeout: float | None, options: _Options) -> _Observed:
    """Sample an existing process: once, or ``round(timeout / interval)`` times."""
    pid = os.getpid() if pid == -1 else pid
    if pid <= 0:
        raise ValueError(f"bad PID {pid}: give -1 (this process) or a positive PID")
    count = 1 if timeout is None else max(1, round(timeout / options.interval))
    if options.metric == _tl.HEAP_METRIC:
        observed, _ = _watch_heap(
            time.sleep, ((count - 1) * options.interval,), {}, options.interval
        )
        del observed.samples[count:]
        return observed
    _procs.check_pid(pid, options.metric)
    own = pid == os.getpid()
    with _KernelWindow(own and options.marks) as window:
        watch = _ProcessWatch(pid, options, max_samples=count, reset=False)
        run = watch.run(lambda: False, deadline=None)
    return watch.observe(run, own_events=window.events, exact=window.peak)


def _watch_popen(
    popen: subprocess.Popen[bytes], timeout: float | None, options: _Options
) -> _Observed:
    """Sample a ``Popen`` given to us until it ends (reaped, as memory_profiler
    does) or ``timeout``; it is left running then."""
    _procs.check_popen(popen)
    watch = _ProcessWatch(popen.pid, options, max_samples=None, reset=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    return watch.observe(watch.run(lambda: popen.poll() is not None, deadline))


def _watch_command(argv: list[str], timeout: float | None, options: _Options) -> _Observed:
    """Start ``argv`` and sample it until it ends, or ``timeout``: its whole
    process group is then ended. Reaped here, which tells the kernel's peak of
    its process tree."""
    popen = _procs.start(argv)
    try:
        watch = _ProcessWatch(popen.pid, options, max_samples=None, reset=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        run = watch.run(lambda: _procs.exited(popen), deadline)
        if not _procs.exited(popen):
            _procs.end_group(popen)  # the timeout passed
        tree_peak = _procs.reap(popen)
    finally:
        if popen.returncode is None:  # interrupted, or failed: leave nothing behind
            _procs.end_group(popen)
            _procs.reap(popen)
    extra = None
    if options.marks and options.children and tree_peak:
        # one process of the tree (all started during the watch) reached it, alone
        extra = TruePeak(tree_peak, 0.0, watch.duration)
    return watch.observe(run, extra_total=extra)


class _ProcessWatch:
    """Samples a process (or this one, from the caller's thread) until told to stop.

    With ``max_usage`` it also reads the process's kernel mark at every poll
    (every 50 ms at most), so a spike shortly before it exits is seen;
    ``reset`` resets the marks of the process and its children after each
    read (for processes we started or were given as a ``Popen``).
    """

    def __init__(
        self,
        pid: int,
        options: _Options,
        max_samples: int | None,
        reset: bool,
        stop_on_interrupt: bool = False,
    ) -> None:
        self.pid = pid
        self.options = options
        self.max_samples = max_samples
        self.stop_on_interrupt = stop_on_interrupt
        self.duration = 0.0
        self.polls: list[RawMark] = []
        self.sampler = Sampler(
            pid,
            options.interval,
            children=options.children,
            metric=options.metric,
            marks=options.marks,
            reset_marks=options.marks and reset,
        )

    def run(self, finished: Callable[[], bool], deadline: float | None) -> _Run:
        origin_ns, wall0 = time.monotonic_ns(), time.time()
        raw = _keep(self.sampler.sample_now())
        if raw and self.max_samples != 1:
            raw += self._sample_until(finished, deadline)
        self.duration = (time.monotonic_ns() - origin_ns) / 1e9
        return raw, origin_ns, wall0

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
                self._poll()
                time.sleep(poll)
        except KeyboardInterrupt:
            if not self.stop_on_interrupt:
                raise
        finally:
            sampler.stop()
        taken = sampler.drain()
        return taken[: None if self.max_samples is None else self.max_samples - 1]

    def _poll(self) -> None:
        if self.options.marks:
            mark = self.sampler.mark_now()
            if mark is not None:
                self.polls.append(mark)

    def observe(
        self,
        run: _Run,
        own_events: Sequence[tuple[int, int | None]] = (),
        exact: int | None = None,
        extra_total: TruePeak | None = None,
    ) -> _Observed:
        return _observe(run, self.pid, self.options, own_events, self.polls, exact, extra_total)


def _observe(
    run: _Run,
    pid: int,
    options: _Options,
    own_events: Sequence[tuple[int, int | None]] = (),
    polls: Sequence[RawMark] = (),
    exact: int | None = None,
    extra_total: TruePeak | None = None,
) -> _Observed:
    """Samples and true peaks from a watch: the kernel marks read with the
    samples and polls, and this process's reads and resets (``own_events``)."""
    raw, origin_ns, wall0 = run
    samples = samples_from_raw(raw, origin_ns)
    marks = marks_from_raw(raw, origin_ns)
    for t_ns, mark in own_events:
        add_mark(marks, pid, (t_ns - origin_ns) / 1e9, mark)
    for t_ns, _, hwm, reset_ns in polls:
        add_mark(marks, pid, (t_ns - origin_ns) / 1e9, hwm)
        if reset_ns:
            add_mark(marks, pid, (reset_ns - origin_ns) / 1e9, None)
    located = located_peaks(marks, [s.time for s in samples])
    own = own_peak(samples, located, pid, exact)
    total = combined_peak(samples, located, pid, exact) if options.children else None
    if extra_total is not None and (total is None or extra_total.value > total.value):
        total = extra_total
    return _Observed(samples, wall0, pid, own, total)


def _keep(sample: RawSample | None) -> list[RawSample]:
    return [] if sample is None else [sample]


# ------------------------------------------------------------------ record --pid


def record_process(
    pid: int,
    *,
    interval: Any,
    include_children: bool,
    multiprocess: bool,
    timeout: Any,
) -> Timeline:
    """See :func:`memtrim.timeline.session.record_process`."""
    interval = _tl.check_interval(interval)
    if timeout is not None:
        timeout = _tl.check_interval(timeout, "timeout")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"bad PID {pid!r}: give a positive whole number")
    _procs.check_pid(pid, "rss")
    options = _Options(interval, include_children or multiprocess, "rss", max_usage=True)
    watch = _ProcessWatch(pid, options, None, reset=False, stop_on_interrupt=True)
    command = _command_line(pid)
    deadline = None if timeout is None else time.monotonic() + timeout
    observed = watch.observe(watch.run(lambda: False, deadline))
    own, total = observed.own, observed.total
    return Timeline(
        samples=tuple(observed.samples),
        start=observed.wall0,
        interval=interval,
        pid=pid,
        command=command,
        include_children=include_children,
        multiprocess=multiprocess,
        peak_rss=None if own is None else own.value,
        duration=watch.duration,
        peak_rss_window=None if own is None else own.window,
        peak_total=None if total is None else total.value,
        peak_total_window=None if total is None else total.window,
    )


def _command_line(pid: int) -> tuple[str, ...]:
    import psutil

    try:
        return tuple(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ()


# ------------------------------------------------------------------ results


def _series_value(sample: Sample, include_children: bool) -> int:
    return sample.total if include_children else sample.rss


def _max_usage(observed: _Observed, include_children: bool) -> tuple[int | None, float | None]:
    """The peak, and when: a sample's time, or the end of the span it lies in."""
    peak = observed.total if include_children else observed.own
    if peak is None:
        return None, None
    return peak.value, peak.before


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
    samples = with_true_peak(observed, include_children)
    order = _children_in_order(samples) if multiprocess else []
    series: list[Any] = []
    for sample in samples:
        value: Any = to_mib(_series_value(sample, include_children))
        if timestamps:
            value = (value, observed.wall0 + sample.time)
        if multiprocess:
            memory = dict(sample.children)
            value = [value, *(to_mib(memory.get(pid, 0)) for pid in order)]
        series.append(value)
    if not multiprocess:
        return series
    result = UsageSeries(series)
    result.pids = (observed.pid, *order)
    return result


def with_true_peak(observed: _Observed, include_children: bool) -> list[Sample]:
    """The samples with the true peak put in at its time (:func:`insert_true_peak`)."""
    peak = observed.total if include_children else observed.own
    return insert_true_peak(observed.samples, peak, include_children)


def _children_in_order(samples: Sequence[Sample]) -> list[int]:
    """Every child's pid, in the order they were first seen (by pid within a sample)."""
    order: dict[int, None] = {}
    for sample in samples:
        for pid, _ in sample.children:
            order.setdefault(pid, None)
    return list(order)


def _write_stream(
    stream: IO[str], observed: _Observed, include_children: bool, multiprocess: bool
) -> None:
    """mprof's text lines: ``MEM <MiB> <epoch>`` and ``CHLD <pid> <MiB> <epoch>``."""
    for sample in with_true_peak(observed, include_children):
        when = observed.wall0 + sample.time
        stream.write(f"MEM {to_mib(_series_value(sample, include_children)):.6f} {when:.4f}\n")
        if multiprocess:
            for pid, value in sample.children:
                stream.write(f"CHLD {pid} {to_mib(value):.6f} {when:.4f}\n")
    stream.flush()
