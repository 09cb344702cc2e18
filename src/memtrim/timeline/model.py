"""Memory over time as plain data: samples, phases, peaks.

Nothing here imports the engine: a :class:`Timeline` is built from raw sampler
tuples by :func:`samples_from_raw`, saved and loaded by
:mod:`memtrim.timeline.recording`, and drawn by :mod:`memtrim.timeline.render.plot`.
All memory figures are bytes; times are seconds since the timeline's start.

True peaks between samples come from the kernel's high-water marks (see
:func:`located_peaks`): a mark read at ``q`` that rose since the read at
``p``, or that was reset right after ``p``, is a peak the process really
reached in ``(p, q]``.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from memtrim.model.findings import Amount, Finding
from memtrim.model.units import MIB as MIB  # re-exported: the timeline's unit
from memtrim.model.units import to_mib as to_mib


@dataclass(frozen=True, slots=True)
class Sample:
    """Memory at one instant: the process, its heap level, and its descendants."""

    time: float
    rss: int
    heap: int | None = None
    children: tuple[tuple[int, int], ...] = ()

    @property
    def total(self) -> int:
        """The process and its descendants, read at the same instant."""
        return self.rss + sum(value for _, value in self.children)


@dataclass(frozen=True, slots=True)
class Phase:
    """A named stretch of a timeline and its own peaks.

    ``peak_heap`` is the highest heap level during the phase above the level
    at its start and ``increment`` the level's change, both exact (``None``
    when the heap was not measured); ``peak_rss`` is the process's highest RSS
    during the phase (the kernel's high-water mark when it could be reset,
    else the highest sample) and ``peak_rss_exact`` says which.
    ``peak_total`` is the peak of the process with its children (``None``
    when children were not followed): see :func:`combined_peak`.
    """

    name: str
    start: float
    end: float
    peak_heap: int | None = None
    increment: int | None = None
    peak_rss: int | None = None
    peak_rss_exact: bool = False
    depth: int = 0
    peak_total: int | None = None

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Peak:
    """The highest value of a series and when it was read."""

    time: float
    value: int


@dataclass(frozen=True)
class Timeline:
    """A recording: what ran, the samples, the phases and the true peaks.

    ``peak_rss`` is the true peak RSS of the main process over the recording:
    the higher of the kernel's high-water mark and the highest sample
    (``None`` when the kernel could not tell); it catches spikes shorter than
    ``interval`` that the samples miss. ``peak_rss_window`` is ``(after,
    before)``: the peak happened in that span of seconds (equal ends: at a
    sample; ``None``: time not known). ``peak_total`` and
    ``peak_total_window`` are the same for the process with its children
    (``None`` when children were not followed).
    """

    samples: tuple[Sample, ...]
    phases: tuple[Phase, ...] = ()
    start: float = 0.0
    interval: float = 0.1
    pid: int = 0
    command: tuple[str, ...] = ()
    metric: str = "rss"
    include_children: bool = False
    multiprocess: bool = False
    peak_rss: int | None = None
    exit_code: int | None = None
    duration: float | None = None
    meta: dict[str, str] = field(default_factory=dict)
    peak_rss_window: tuple[float, float] | None = None
    peak_total: int | None = None
    peak_total_window: tuple[float, float] | None = None

    @property
    def has_heap(self) -> bool:
        """Was the exact heap level recorded?"""
        return any(s.heap is not None for s in self.samples)

    @property
    def has_children(self) -> bool:
        """Did any descendant process show up?"""
        return any(s.children for s in self.samples)

    FILE_KIND = "timeline"

    @property
    def length(self) -> float:
        """Duration of the recording (the last sample's time if unknown)."""
        if self.duration is not None:
            return self.duration
        return self.samples[-1].time if self.samples else 0.0

    def findings(self) -> list[Finding]:
        """The recording's peaks, in one shape (no line: ``where`` is None).

        Whole recording (``name`` ""): ``rss`` the process's peak RSS (exact
        when the kernel's mark was read, else the highest sample), ``total``
        the same with its children, ``heap`` the highest heap level sampled
        (an estimate). Per phase (``name`` the phase's): ``heap`` its peak
        above its start (exact) and its ``increment`` (exact), ``rss`` and
        ``total`` its peaks. Figures not measured are left out.
        """
        out = []
        for what, true in (("rss", self.peak_rss), ("total", self.peak_total)):
            if what == "total" and true is None and not self.has_children:
                continue
            sampled = peak_of(self.samples, what)
            if true is not None and (sampled is None or true >= sampled.value):
                out.append(Finding(what, None, "peak", Amount(true), exact=True))
            elif sampled is not None:
                out.append(Finding(what, None, "peak", Amount(sampled.value), exact=False))
        heap = peak_of(self.samples, "heap")
        if heap is not None:
            out.append(Finding("heap", None, "peak", Amount(heap.value), exact=False))
        for phase in self.phases:
            figures = (
                ("heap", "peak", phase.peak_heap, True),
                ("heap", "increment", phase.increment, True),
                ("rss", "peak", phase.peak_rss, phase.peak_rss_exact),
                ("total", "peak", phase.peak_total, False),
            )
            out += [
                Finding(what, None, metric, Amount(value), exact, phase.name)
                for what, metric, value, exact in figures
                if value is not None
            ]
        return out


RawSample = tuple[int, int | None, tuple[tuple[int, int], ...], object]


def samples_from_raw(raw: Iterable[RawSample], origin_ns: int) -> list[Sample]:
    """Turn sampler tuples into :class:`Sample` objects, times relative to ``origin_ns``.

    The first ``(pid, bytes)`` pair is the watched process; the rest are its
    descendants, kept sorted by pid. Samples are returned in time order.
    """
    samples = []
    for t_ns, heap, procs, *_ in raw:
        if not procs:
            continue
        (_, rss), *children = procs
        samples.append(Sample((t_ns - origin_ns) / 1e9, rss, heap, tuple(sorted(children))))
    samples.sort(key=lambda s: s.time)
    return samples


def peak_of(samples: Sequence[Sample], what: str = "rss") -> Peak | None:
    """Highest ``rss``, ``total`` (with children) or ``heap`` among ``samples``."""
    best: Peak | None = None
    for sample in samples:
        value = getattr(sample, what)
        if value is not None and (best is None or value > best.value):
            best = Peak(sample.time, value)
    return best


def within(samples: Sequence[Sample], start: float, end: float) -> list[Sample]:
    """The samples taken from ``start`` to ``end`` (inclusive)."""
    return [s for s in samples if start <= s.time <= end]


def child_series(samples: Sequence[Sample]) -> dict[int, list[tuple[float, int]]]:
    """Per descendant pid, its ``(time, bytes)`` points, in order of first appearance."""
    series: dict[int, list[tuple[float, int]]] = {}
    for sample in samples:
        for pid, value in sample.children:
            series.setdefault(pid, []).append((sample.time, value))
    return series


# ------------------------------------------------------------------ true peaks


@dataclass(frozen=True, slots=True)
class TruePeak:
    """A peak that really happened, and when: in ``(after, before]`` seconds.

    ``after == before``: at that sample. Both ``None``: when is not known.
    """

    value: int
    after: float | None = None
    before: float | None = None

    @property
    def window(self) -> tuple[float, float] | None:
        """``(after, before)``, or ``None`` when the time is not known."""
        if self.after is None or self.before is None:
            return None
        return (self.after, self.before)


@dataclass(frozen=True, slots=True)
class MarkEvent:
    """A read of one process's kernel high-water mark (``hwm`` bytes) at
    ``time``, or (``hwm=None``) the moment its mark was reset."""

    time: float
    hwm: int | None


@dataclass(frozen=True, slots=True)
class LocatedPeak:
    """Process ``pid`` reached ``value`` bytes at some moment in ``(after, before]``."""

    pid: int
    value: int
    after: float
    before: float


def marks_from_raw(raw: Iterable[RawSample], origin_ns: int) -> dict[int, list[MarkEvent]]:
    """Per pid, the mark reads (and resets) carried by sampler tuples."""
    events: dict[int, list[MarkEvent]] = {}
    for t_ns, _, _, marks, *_ in raw:
        for pid, hwm, reset_ns in marks or ():  # type: ignore[attr-defined]
            add_mark(events, pid, (t_ns - origin_ns) / 1e9, hwm)
            if reset_ns:
                add_mark(events, pid, (reset_ns - origin_ns) / 1e9, None)
    return events


def add_mark(events: dict[int, list[MarkEvent]], pid: int, time: float, hwm: int | None) -> None:
    """Add one read (or, ``hwm=None``, one reset) of ``pid``'s mark to ``events``."""
    events.setdefault(pid, []).append(MarkEvent(time, hwm))


def located_peaks(
    events: Mapping[int, Sequence[MarkEvent]], sample_times: Sequence[float]
) -> list[LocatedPeak]:
    """The peaks the marks prove, each in the interval between two reads.

    For two successive reads ``p`` and ``q`` of a process's mark, ``q.hwm``
    is a value the process reached in ``(p, q]`` when the mark was reset in
    between (it then covers only that time) or when it rose (the mark never
    falls between resets). Resets nobody recorded only make this miss a peak,
    never place one wrongly. A process first seen after the first sample was
    started since the sample before: its first mark is a peak of that span,
    as is a first read after a recorded reset.
    """
    times = sorted(sample_times)
    found = []
    for pid, pid_events in events.items():
        previous: MarkEvent | None = None
        reset_at: float | None = None
        for event in sorted(pid_events, key=lambda e: (e.time, e.hwm is None)):
            if event.hwm is None:
                reset_at = event.time if reset_at is None else reset_at
                continue
            after = _after(previous, reset_at, event, times)
            if after is not None:
                found.append(LocatedPeak(pid, event.hwm, after, event.time))
            previous, reset_at = event, None
    return found


def _after(
    previous: MarkEvent | None, reset_at: float | None, read: MarkEvent, times: Sequence[float]
) -> float | None:
    """Where the span a read's mark covers begins, or ``None`` if it is not known."""
    assert read.hwm is not None
    if previous is not None:
        assert previous.hwm is not None
        rose = read.hwm > previous.hwm
        return previous.time if (reset_at is not None or rose) else None
    if reset_at is not None:
        return reset_at
    before = bisect.bisect_left(times, read.time)
    if before == 0:
        return None  # seen from the first sample on: its mark holds its past
    return times[before - 1]  # new since the sample before: its whole life is in here


def own_peak(
    samples: Sequence[Sample], located: Iterable[LocatedPeak], pid: int, exact: int | None = None
) -> TruePeak | None:
    """The true peak of the main process ``pid``: its highest sample, a
    located mark, or ``exact`` (a mark over the whole span, time unknown),
    whichever is highest."""
    best = _sampled(samples, "rss")
    for peak in located:
        if peak.pid == pid and (best is None or peak.value > best.value):
            best = TruePeak(peak.value, peak.after, peak.before)
    if exact is not None and (best is None or exact > best.value):
        best = TruePeak(exact)
    return best


def combined_peak(
    samples: Sequence[Sample],
    located: Iterable[LocatedPeak],
    pid: int,
    exact: int | None = None,
) -> TruePeak | None:
    """A lower bound of the peak of the process with its children that catches
    any single process's spike.

    It is the highest of: the highest sum of one sample (all processes read at
    the same instant); for each peak a process's mark proves in ``(after,
    before]``, that peak plus what every other process held at both samples
    around that span (the smaller of its two readings); and ``exact``, the
    main process's own peak, alone.
    """
    best = _sampled(samples, "total")
    times = [s.time for s in samples]
    for peak in located:
        around = _around(samples, times, peak.after, peak.before)
        if around is None:
            continue
        first, last = (_memory_by_pid(s, pid) for s in around)
        others = sum(min(v, last[q]) for q, v in first.items() if q != peak.pid and q in last)
        value = peak.value + others
        if best is None or value > best.value:
            best = TruePeak(value, peak.after, peak.before)
    if exact is not None and (best is None or exact > best.value):
        best = TruePeak(exact)
    return best


def located_within(located: Iterable[LocatedPeak], start: float, end: float) -> list[LocatedPeak]:
    """The located peaks whose whole span lies in ``[start, end]``."""
    return [p for p in located if start <= p.after and p.before <= end]


def _sampled(samples: Sequence[Sample], what: str) -> TruePeak | None:
    peak = peak_of(samples, what)
    return None if peak is None else TruePeak(peak.value, peak.time, peak.time)


def _around(
    samples: Sequence[Sample], times: Sequence[float], after: float, before: float
) -> tuple[Sample, Sample] | None:
    """The last sample at or before ``after`` and the first at or after ``before``."""
    i = bisect.bisect_right(times, after) - 1
    j = bisect.bisect_left(times, before)
    if i < 0 or j >= len(samples):
        return None
    return samples[i], samples[j]


def _memory_by_pid(sample: Sample, pid: int) -> dict[int, int]:
    memory = dict(sample.children)
    memory[pid] = sample.rss
    return memory


def insert_true_peak(
    samples: Sequence[Sample], peak: TruePeak | None, include_children: bool = False
) -> list[Sample]:
    """The samples, with the true peak put in at its time when it is higher
    than every sample (a spike between two samples, seen by the kernel's
    high-water mark or the heap's exact peak): ``max()`` of the series is
    then the peak, even for a call or a program shorter than a sample.

    The point goes in the middle of the span the peak is known to lie in
    (between the two samples around it; the whole span when that is not
    known). What the other processes held there is the lower of their two
    readings around it (as :func:`combined_peak` counts them)."""
    samples = list(samples)
    if peak is None or not samples:
        return samples
    values = [s.total if include_children else s.rss for s in samples]
    if peak.value <= max(values):
        return samples
    after, before = peak.window or (samples[0].time, samples[-1].time)
    when = (after + before) / 2
    i = bisect.bisect_right([s.time for s in samples], when)
    left, right = samples[max(i - 1, 0)], samples[min(i, len(samples) - 1)]
    kept = dict(right.children)
    children = tuple((pid, min(v, kept[pid])) for pid, v in left.children if pid in kept)
    if include_children:  # the peak is of the whole tree: the main process is the rest
        own = peak.value - sum(v for _, v in children)
        point = Sample(when, max(own, 0), None, children)
        if point.total != peak.value:  # the children's floor exceeds it: the peak alone
            point = Sample(when, peak.value, None, ())
    else:
        point = Sample(when, peak.value, None, children)
    return [*samples[:i], point, *samples[i:]]


def with_true_peaks(timeline: Timeline) -> Timeline:
    """``timeline`` with its true peaks (the process's, and with its children)
    in its samples (:func:`insert_true_peak`): the highest sample is the peak."""
    samples = insert_true_peak(
        timeline.samples,
        None
        if timeline.peak_rss is None
        else TruePeak(timeline.peak_rss, *(timeline.peak_rss_window or (None, None))),
    )
    if timeline.peak_total is not None and timeline.has_children:
        window = timeline.peak_total_window or (None, None)
        samples = insert_true_peak(samples, TruePeak(timeline.peak_total, *window), True)
    return dataclasses.replace(timeline, samples=tuple(samples))
