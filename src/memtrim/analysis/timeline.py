"""Memory over time as plain data: samples, phases, peaks.

Nothing here imports the engine: a :class:`Timeline` is built from raw sampler
tuples by :func:`samples_from_raw`, saved and loaded by
:mod:`memtrim.analysis.recording`, and drawn by :mod:`memtrim.reporters.plot`.
All memory figures are bytes; times are seconds since the timeline's start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

MIB = 2**20


def to_mib(value: int) -> float:
    """Bytes to MiB (memory_profiler's unit)."""
    return value / MIB


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
    """

    name: str
    start: float
    end: float
    peak_heap: int | None = None
    increment: int | None = None
    peak_rss: int | None = None
    peak_rss_exact: bool = False
    depth: int = 0

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
    """A recording: what ran, the samples, the phases and the true peak.

    ``peak_rss`` is the kernel's high-water mark of the main process over the
    recording when it was known (``None`` otherwise); it catches spikes
    shorter than ``interval`` that the samples miss.
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

    @property
    def has_heap(self) -> bool:
        """Was the exact heap level recorded?"""
        return any(s.heap is not None for s in self.samples)

    @property
    def has_children(self) -> bool:
        """Did any descendant process show up?"""
        return any(s.children for s in self.samples)

    @property
    def length(self) -> float:
        """Duration of the recording (the last sample's time if unknown)."""
        if self.duration is not None:
            return self.duration
        return self.samples[-1].time if self.samples else 0.0


def samples_from_raw(
    raw: Iterable[tuple[int, int | None, tuple[tuple[int, int], ...]]], origin_ns: int
) -> list[Sample]:
    """Turn sampler tuples into :class:`Sample` objects, times relative to ``origin_ns``.

    The first ``(pid, bytes)`` pair is the watched process; the rest are its
    descendants, kept sorted by pid. Samples are returned in time order.
    """
    samples = []
    for t_ns, heap, procs in raw:
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
