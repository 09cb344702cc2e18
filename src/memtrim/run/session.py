"""Profile a whole program: what was live at the peak, what leaked, who allocated.

:class:`ProgramProfiler` drives the engine's call tree and a native sampling
thread for the timeline, and builds a :class:`~memtrim.run.capture.Capture`::

    with ProgramProfiler() as profiler:
        main()
    capture = profiler.capture
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

import memtrim
from memtrim import __version__
from memtrim.engine import calltree, deadline, hooks, memory, no_gc, procfs
from memtrim.model.rss import breakdown
from memtrim.run import _threads
from memtrim.run._threads import ThreadNames
from memtrim.run.build import EntryTest, OwnFiles, build
from memtrim.run.capture import Capture, decimate
from memtrim.run.children import Children
from memtrim.run.ondisk import DiskKeeper

DEFAULT_SAMPLE_BYTES = 256 * 1024
DEFAULT_INTERVAL = 0.01
TIMELINE_POINTS = 2000
# the SIGTERM dump's context (see dump_context) is set again at most this
# often, and in at most 1/CONTEXT_SHARE of the time since the last
CONTEXT_REFRESH = 1.0
CONTEXT_SHARE = 20
# the RSS breakdown is read again each time the heap's peak grows this much
# (a fraction): the last reading is within it of the peak
RSS_STEP = 0.05
# memtrim's own frames in the program's stacks (see OwnFiles)
OWN_FILES = OwnFiles(
    package=os.path.dirname(os.path.abspath(memtrim.__file__)) + os.sep,
    transparent=(os.path.abspath(hooks.__file__),),
    bookkeeping=(os.path.abspath(_threads.__file__),),
)


class Observer(Protocol):
    """Something that looks at the program while it is recorded (the advisor):
    ``start(base)`` when recording starts at heap level ``base``,
    ``finish()`` when the program ended (still recording), and
    ``conclude(raw)`` with the call tree's snapshot, returning what goes into
    the capture's meta (plain data)."""

    def start(self, base: int) -> None: ...

    def finish(self) -> None: ...

    def conclude(self, raw: dict[str, Any]) -> dict[str, Any]: ...


class ProgramProfiler:
    """Records every allocation of the process between :meth:`start` and :meth:`stop`.

    ``exact=False`` (the default) charges each block exactly to the line that
    allocated it and samples full stacks (one per ``sample_bytes`` allocated,
    on average) for the flame graph; ``exact=True`` charges every block to its
    full stack. ``interval`` is the timeline's sampling period in seconds.
    ``is_entry(filename, qualname)`` tells which code called from memtrim's
    own frames is the program's (the rest is memtrim's bookkeeping). ``root``
    is the directory the capture's sites are told relative to (default: the
    current directory when recording starts). ``seed`` fixes which allocations
    the default mode samples for its stacks (default: a random one, recorded in
    the capture so that a run can be replayed with the same samples).
    ``native`` counts what C libraries allocate (``malloc``, ``mmap``) too
    (default: yes, unless ``MEMTRIM_PYTHON_ONLY=1``); each site then says how
    much of its memory is native. ``native_frames`` (default mode) puts the C
    functions that made a native block below its Python line in the sampled
    stacks (the flame graph). ``observer`` (an :class:`Observer`, the advisor)
    looks at the program while it runs and adds its findings to the capture.
    ``collect_first``: a full garbage collection before the figures start, so
    that garbage from before the recording, freed by a collection during it,
    is not taken off the program's figures (without it, a program that calls
    ``gc.collect()`` could end below zero bytes: a capture memtrim refuses).
    It costs one collection of the heap as it is: turn it off only for a heap
    so big that this matters, and no collection while recording.
    ``keep(capture)``, if given, writes a capture of the recording so far while
    the program runs (:class:`~memtrim.run.ondisk.DiskKeeper`: as the peak
    grows, and near the memory limit), so that a killed program leaves one.
    ``on_term``, if set (by :class:`~memtrim.run.lifecycle.ProgramRun`), ends
    the process once the keeper has written the capture of a SIGTERM that came
    while the main thread was in a C call without the GIL.
    """

    def __init__(
        self,
        *,
        exact: bool = False,
        sample_bytes: int = DEFAULT_SAMPLE_BYTES,
        interval: float = DEFAULT_INTERVAL,
        meta: dict[str, Any] | None = None,
        is_entry: EntryTest | None = None,
        root: str | None = None,
        seed: int | None = None,
        native: bool | None = None,
        native_frames: bool = False,
        observer: Observer | None = None,
        keep: Callable[[Capture], None] | None = None,
        collect_first: bool = True,
    ) -> None:
        if sample_bytes <= 0:
            raise ValueError(f"sample_bytes must be positive, not {sample_bytes}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.exact = exact
        self.sample_bytes = sample_bytes
        self.interval = interval
        self.meta = dict(meta or {})
        self.is_entry = is_entry
        self.root = root
        self.seed = random.getrandbits(63) if seed is None else seed
        self.native = native
        self.native_frames = native_frames
        self.observer = observer
        self.keep = keep
        self.collect_first = collect_first
        self.progress: Callable[[str], None] = lambda step: None  # names each slow step
        self.on_term: Callable[[], None] | None = None
        # set by a command that prepared the SIGTERM dump (engine.deadline):
        # its part of the dump's context, kept up to date while the program runs
        self.dump_context: Callable[[], dict[str, Any]] | None = None
        self._context_due = self._names_due = 0.0
        self._names_dirty = False
        self._keeper: DiskKeeper | None = None
        self._rss0 = self._rss_end = 0
        self.capture: Capture | None = None
        self._sampler: Any = None
        self._samples: list[Any] = []
        self._t0 = 0.0
        self._wall0 = 0.0
        self._running = False
        self.ever_started = False
        self._paused: tuple[int, int, float] | None = None
        self._base = 0
        self._threads = ThreadNames()
        self._hooks: hooks.Handle | None = None
        self._rss_facts: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)

    def start(self) -> None:
        """Install the hooks and start recording."""
        if self._running:
            raise RuntimeError("this profiler is already running")
        self._hooks = hooks.acquire("memtrim run", self.native)
        self.meta["native"] = self._hooks.native
        wanted = hooks.native_default() if self.native is None else self.native
        if wanted and not self._hooks.native:  # said in every report
            self.meta["native_error"] = hooks.native_error() or "native tracking failed"
        self._samples = []
        self._t0 = time.monotonic()
        self._wall0 = time.time()
        self._pid = os.getpid()
        if self.root is None:
            try:
                self.root = os.getcwd()
            except OSError:  # the directory is gone: paths stay absolute
                self.root = ""
        self._start_sampler()
        if self.keep is not None:  # before the base: its thread's start is not the program's
            self._keeper = DiskKeeper(
                0,
                self._partial,
                self.keep,
                children=Children(),
                # a command's SIGTERM dump writes the reports and summary too:
                # the keeper leaves a SIGTERM in a C call to it
                on_term=lambda: self.on_term if self.dump_context is None else None,
                on_tick=self._dump_tick,
            )
            self._keeper.start()
        self._rss0 = procfs.rss()
        # Blocks allocated before now (memtrim's own, or the program's before
        # profiling) are not the profiled code's: figures start from here.
        # What memtrim allocates from here on for itself (the call tree's set
        # up, the thread names, the advisor, the keeper) is its own work, never
        # counted: the heap's level and peak are then the program's alone, and
        # every total of a report is a sum of its lines (a `print("hi")` no
        # longer peaks above what it allocated).
        calltree.own_enter()  # first: even the int the level comes in is memtrim's
        if self.collect_first:
            # Garbage from before the recording (memtrim's own start) freed by a
            # collection during it would count as freed by the program: the level
            # would end below the start (a program that calls gc.collect() got a
            # capture with negative bytes). Collected now, in memtrim's own mode.
            gc.collect()
        self._base = hooks.level()
        try:
            if self.dump_context is not None:
                self._threads.on_change = self._set_dump_names
            self._threads.start()
            calltree.start(
                self.exact,
                self.sample_bytes,
                OWN_FILES.transparent,
                self.seed,
                cframes=self.native_frames and self._hooks.native,
            )
            self.meta["native_frames"] = bool(self.native_frames and self._hooks.native)
            memory.watch_start(RSS_STEP)
            if self.observer is not None:
                self.observer.start(self._base)
            if self._keeper is not None:
                self._keeper.base = self._base
            with contextlib.suppress(Exception):  # (then no dump: the process just dies)
                self._set_dump_context()
                self._set_dump_names()
        except BaseException:
            if self._keeper is not None:
                self._keeper.stop()
                self._keeper = None
            memory.watch_stop()
            self._threads.stop()
            self._stop_sampler()
            self._hooks.release()
            raise
        finally:
            calltree.own_exit()
        self._running = True
        self.ever_started = True

    def _partial(self, why: dict[str, Any]) -> Capture:
        """A capture of the recording so far (the keeper's: the program runs on)."""
        raw = calltree.snapshot()
        now = time.monotonic()
        base = self._base
        timeline = self._timeline(now - self._t0, hooks.level() - base, self._sampler_peek())
        why = dict(why)
        meta = {**self._meta(now - self._t0), "partial": why}
        if "exit" in why:  # how the program ends (a SIGTERM in a C call)
            meta["exit"] = why.pop("exit")
        peak, end = max(hooks.peak() - base, 0), max(hooks.level() - base, 0)
        return self._capture(raw, meta, peak, end, timeline)

    def _dump_tick(self) -> None:
        self._set_dump_context()
        self._set_dump_names(tick=True)

    def _set_dump_context(self) -> None:
        """Give the engine what a SIGTERM dump needs besides the call tree: the
        command exec'ed on it builds the capture from both (run/termdump.py).
        In memtrim's own mode (the keeper's thread, or the start)."""
        if self.dump_context is None or time.monotonic() < self._context_due:
            return
        began = time.monotonic()
        level = hooks.level() - self._base
        samples = self._sampler_peek()
        context = {
            "meta": self._meta(0.0),
            "t0_ns": int(self._t0 * 1e9),
            "base": self._base,
            "root": self.root or "",
            "sys_path": list(sys.path),
            "seed": self.seed,
            "timeline": self._timeline(began - self._t0, level, samples),
            "kept": self._keeper.written if self._keeper is not None else 0,
            **self.dump_context(),
        }
        deadline.set_context(json.dumps(context).encode())
        spent = time.monotonic() - began
        self._context_due = began + max(CONTEXT_REFRESH, CONTEXT_SHARE * spent)

    def _set_dump_names(self, tick: bool = False) -> None:
        """The threads' names for a SIGTERM dump, as each thread starts or ends
        (in the program's thread: memtrim's own work, never counted), in at
        most 1/CONTEXT_SHARE of the time: a program that starts threads by the
        thousand has the latest set by one of the keeper's next ticks."""
        now = time.monotonic()
        if tick and not self._names_dirty:
            return
        if now < self._names_due:
            self._names_dirty = True
            return
        with calltree.own():
            names = {str(ident): seen for ident, seen in self._threads.table().items()}
            deadline.set_context(json.dumps(names).encode(), names=True)
        self._names_dirty = False
        self._names_due = now + CONTEXT_SHARE * (time.monotonic() - now)

    def _sampler_peek(self) -> list[Any]:
        """The samples so far, the native thread going on."""
        if self._sampler is not None:
            with contextlib.suppress(Exception):
                self._samples.extend(self._sampler.drain())
        return self._samples

    def pause(self) -> None:
        """Stop attributing allocations; :meth:`stop` builds the capture later."""
        if self._running and self._paused is None:
            calltree.own_enter()  # what memtrim allocates from here is its own
            try:
                if self._keeper is not None:  # first: it reads the recording
                    self._keeper.stop()
                    self._keeper.children.poll()  # the ones still there
                    children = self._keeper.children.summary()
                    if children:
                        self.meta["children"] = children
                    if self._keeper.written:
                        self.meta["kept_on_disk"] = self._keeper.written
                    if self._keeper.errors:
                        self.meta["keeper_errors"] = self._keeper.errors[:3]
                    self._keeper = None
                if self.observer is not None:
                    self.progress("looking at the objects for advice")
                    self._observe(self.observer.finish)
                calltree.stop()
                base = self._base
                figures = (hooks.peak() - base, hooks.level() - base, time.monotonic())
                self._read_rss()
                self._note_native()
                self._rss_end = procfs.rss()
                self._paused = figures
            finally:
                calltree.own_exit()

    def stop(self) -> Capture:
        """Stop recording and build :attr:`capture` (safe to call twice)."""
        if not self._running:
            if self.capture is None:
                raise RuntimeError("this profiler was never started")
            return self.capture
        self.pause()
        self._explain_rss()
        assert self._paused is not None
        peak, end, stopped = self._paused
        self._running = False
        self._paused = None
        duration = stopped - self._t0
        self._stop_sampler()
        self.progress("building the capture")
        with no_gc():
            return self._build(duration, peak, end)

    def _observe(self, step: Any, *args: Any) -> Any:
        """Call the observer; its failure is noted, never the program's."""
        try:
            return step(*args)
        except Exception as exc:
            self.meta.setdefault("observer_errors", []).append(f"{type(exc).__name__}: {exc}")
            return None

    def _note_native(self) -> None:
        """What the native hooks could not track, for the reports."""
        if self._hooks is not None and self._hooks.native:
            untracked = hooks.native_stats()["untracked_maps"]
            if untracked:
                self.meta["native_untracked_maps"] = untracked

    def _read_rss(self) -> None:
        """The facts of the RSS near the heap's peak (read by the engine as the
        heap rose) and now, as the program ends, with the hooks still in."""
        try:
            self._rss_facts = (memory.watch_stop(), memory.read())
        except Exception:  # never lose the profile for the breakdown's sake
            self._rss_facts = (None, None)

    def _explain_rss(self) -> None:
        near_peak, at_exit = self._rss_facts
        found = {}
        if at_exit is not None:
            found["at_exit"] = breakdown(at_exit, "at_exit").to_dict()
        if near_peak is not None:
            found["peak"] = breakdown(near_peak, "peak").to_dict()
            found["peak"]["heap"] = max(int(near_peak["level"]) - self._base, 0)
        if found:
            self.meta["rss"] = found

    def _build(self, duration: float, peak: int, end: int) -> Capture:
        raw = calltree.snapshot()
        if self.observer is not None:
            self.meta.update(self._observe(self.observer.conclude, raw) or {})
        calltree.clear()
        self._threads.stop()
        if self._hooks is not None:
            self._hooks.release()
        timeline = self._timeline(duration, end, self._samples, self._rss_end)
        meta = self._meta(duration)
        self.capture = self._capture(raw, meta, peak, end, timeline)
        return self.capture

    def _capture(
        self,
        raw: dict[str, Any],
        meta: dict[str, Any],
        peak: int,
        end: int,
        timeline: list[tuple[float, int, int]],
    ) -> Capture:
        """The capture of a call-tree snapshot (the final one, or the keeper's)."""
        return build(
            raw,
            meta=meta,
            peak_bytes=peak,
            peak_time=max(timeline, key=lambda p: p[1])[0] if timeline else 0.0,
            end_bytes=end,
            timeline=timeline,
            thread_names=self._threads.name,
            is_entry=self.is_entry,
            own=OWN_FILES,
            root=self.root or "",
            sys_path=list(sys.path),
            seed=self.seed,
        )

    def _meta(self, duration: float) -> dict[str, Any]:
        return {
            "memtrim": __version__,
            "python": sys.version.split()[0],
            "platform": sys.platform,
            "pid": os.getpid(),
            "started": self._wall0,
            "duration": duration,
            "interval": self.interval,
            **self.meta,
        }

    def after_fork_in_child(self) -> None:
        """In a forked child that goes on recording: a new sampling thread."""
        self.meta["parent_pid"] = self._pid
        # the run's time axis is the parent's (the same start): when the child
        # began, and the parent's blocks it began with (not its own)
        self.meta["forked_at"] = round(time.monotonic() - self._t0, 6)
        self.meta["fork_level"] = max(hooks.level() - self._base, 0)
        self._pid = os.getpid()
        self._sampler = None
        self._start_sampler()
        # the parent's watcher thread is not in the child, and a new one's
        # start would be counted in the child's figures: no capture is kept
        # on disk while a forked child runs
        self._keeper = None

    def stop_in_forked_child(self) -> None:
        """In a forked child that is not profiled: stop recording there."""
        self._keeper = None
        calltree.stop()

    # ----------------------------------------------------------- timeline

    def _start_sampler(self) -> None:
        if Sampler is None:
            return
        try:
            self._sampler = Sampler(os.getpid(), self.interval, heap=True)
            self._sampler.start()
        except Exception:  # no sampler on this platform: the timeline stays empty
            self._sampler = None

    def _stop_sampler(self) -> None:
        if self._sampler is None:
            return
        try:
            self._sampler.stop()
            self._samples.extend(self._sampler.drain())
        except Exception:
            pass
        self._sampler = None

    def _timeline(
        self, duration: float, end: int, samples: list[Any], rss_end: int = 0
    ) -> list[tuple[float, int, int]]:
        """(time, heap, RSS) from the start (nothing allocated yet, the RSS
        then) through the native thread's samples to the end: two points at
        least, whatever the program's length."""
        t0_ns = int(self._t0 * 1e9)
        points = [(0.0, 0, self._rss0)]
        last_heap = 0
        for t_ns, heap_level, rss, *_marks in samples:
            last_heap = heap_level - self._base if heap_level is not None else last_heap
            points.append(((t_ns - t0_ns) / 1e9, max(last_heap, 0), rss[0][1] if rss else 0))
        points = [p for p in points if p[0] >= 0]
        rss_now = rss_end or points[-1][2]
        points.append((max(duration, points[-1][0]), max(end, 0), rss_now))
        return decimate(points, TIMELINE_POINTS)

    # ----------------------------------------------------- context manager

    def __enter__(self) -> ProgramProfiler:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _sampler_class() -> Any:
    try:
        from memtrim.engine.sampler import Sampler
    except ImportError:  # pragma: no cover - no sampler on this platform
        return None
    return Sampler


# imported now, not while the hooks count: its objects are not the program's
Sampler = _sampler_class()
