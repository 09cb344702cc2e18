"""Advice for live objects (``memtrim.advise()``) and for a whole run
(``memtrim run --advise``).

``advise(*objs)`` looks at the given objects and what they hold, or at every
live object with no argument, and returns the advice as plain records. In a
run, :class:`RunWalker` looks at the live objects as the heap nears its
peak and again at the end (see :class:`RunWalker` for when), then at
every line's figures (the lines that built big transient data), and merges
what it found into one list, largest saving first.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from memtrim.advice.render.text import AdviceList
from memtrim.advice.rules import growth, instances, lines, numbers, strings
from memtrim.advice.rules.heap import gather
from memtrim.advice.rules.lines import LineFigures
from memtrim.advice.rules.sites import Line, Sites
from memtrim.advice.rules.walk import Walk
from memtrim.engine import calltree, hooks
from memtrim.model.advice import DEFAULT_THRESHOLD, Advice, check_threshold, merge, ranked
from memtrim.objects import _layout, referrers

#: the object rules, in the order they run, each with the parts of the heap
#: no later rule needs: they are let go after it. The rules that measure what
#: deleting would free read reference counts, which the heap's own lists
#: would raise: they run last, once those lists are gone.
OBJECT_RULES: tuple[tuple[Callable[[Walk], list[Advice]], tuple[str, ...]], ...] = (
    (strings.intern_rule, ("strs",)),
    (instances.records_rule, ("dicts",)),
    (instances.slots_rule, ("instances",)),
    (numbers.dtype_rule, ("arrays", "frames")),
    (numbers.array_rule, ("seqs",)),
    (strings.lookup_rules, ("sets",)),
    (growth.cache_rule, ("caches",)),
)
#: holder chains are looked up for this many advice per walk (one search of
#: the heap for all of them)
HOLDERS = 20


def _holders(objs: list[Any]) -> list[list[str]]:
    """The holder chain of each object, as its parts (root first)."""
    try:
        chains = referrers.first_chains(objs, skip_frames=2)
    except Exception:
        return [[] for _ in objs]
    return [
        [c.root.name, *(f"{tp}{acc}" for tp, acc in c.steps), c.target] if c else [] for c in chains
    ]


def run_rules(
    walk: Walk,
    extra: Iterable[Advice] = (),
    last: Callable[[Walk], list[Advice]] | None = None,
) -> list[Advice]:
    """Every object rule on one walk (``last`` after them), the holders of
    the largest found. The walk's heap is emptied on the way."""
    found: list[Advice] = list(extra)
    for rule, done in OBJECT_RULES:
        try:
            found += rule(walk)
        except Exception as exc:  # one rule's surprise never costs the others' advice
            walk.errors.append(f"{getattr(rule, '__name__', rule)}: {type(exc).__name__}: {exc}")
        for part in done:
            getattr(walk.heap, part).clear()
    if last is not None:
        try:
            found += last(walk)
        except Exception as exc:
            walk.errors.append(f"{type(exc).__name__}: {exc}")
    wanted = [
        a for a in ranked(found, walk.threshold)[:HOLDERS] if not a.holder and id(a) in walk.keep
    ]
    if wanted:
        # the objects are alive: found live, and no code of the program ran since
        holders = _holders([_layout.object_at(walk.keep[id(a)]) for a in wanted])
        for item, holder in zip(wanted, holders, strict=True):
            item.holder = holder
    walk.keep.clear()
    return found


def advise(*objs: Any, threshold: int = DEFAULT_THRESHOLD) -> AdviceList:
    """Advice for ``objs`` and what they hold, or for every live object.

    Returns an :class:`AdviceList` (a list of :class:`~memtrim.model.advice.Advice`,
    largest saving first, nothing under ``threshold`` bytes) that prints as a
    table. Inside ``memtrim run`` each advice names the line that allocated
    the objects; elsewhere the holder chain says where they are. Any object
    is accepted: no method of the program's own classes is called (numpy,
    pandas and ``functools`` methods are, on their own objects).
    """
    threshold = check_threshold(threshold)
    sites = Sites(calltree.is_recording())
    with _own_work(collect=False):
        found = _advise(objs, sites, threshold)
    with _own_work(collect=True):  # the walk's young garbage (see RunWalker._walk)
        pass
    return found


def _advise(objs: tuple[Any, ...], sites: Sites, threshold: int) -> AdviceList:
    heap = gather(list(objs) if objs else None, skip={id(objs)})
    walk = Walk(heap, sites, threshold, when="now")
    found = run_rules(walk)
    return AdviceList(ranked(_drop_vetoed(found, walk.vetoes), threshold))


def _drop_vetoed(found: Iterable[Advice], vetoes: set[tuple[str, Any]]) -> list[Advice]:
    return [a for a in found if (a.kind, (a.filename, a.lineno)) not in vetoes]


class _own_work:
    """The garbage collector off (a collection would run the program's
    finalizers) and, while the hooks count, memtrim's new blocks not counted.

    On the way out, the youngest generation is collected (if the program lets
    the collector run): the walk's own reference cycles (a search's bookkeeping)
    must not keep the program's objects alive past their time, which the
    figures at exit would show. Everything the walk made is in that
    generation, as no collection ran during it; the program's own young
    garbage goes with it, as at any of its own allocations.
    """

    def __init__(self, collect: bool = True) -> None:
        self._collect = collect

    def __enter__(self) -> None:
        # first thing: nothing of the walk's, this object's bookkeeping included,
        # may be counted as the program's
        self._own = hooks.is_installed()
        if self._own:
            calltree.own_enter()
        self._enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        try:
            if self._enabled and self._collect:
                gc.collect(0)
        finally:
            if self._enabled:
                gc.enable()
            if self._own:
                calltree.own_exit()


class RunWalker:
    """The advisor of one ``memtrim run`` (behind
    ``memtrim.advice.running.RunAdvisor``): walks near the peak and at the end.

    When: the first walk when the heap's peak reaches ``first`` bytes above
    its level at the start (default: eight times the threshold, at least 8
    MiB), then each time the peak has grown by ``step`` (a factor, 1.5) since
    the last walk. A walk costs about as much as a census (a pass over every
    live object, mostly in C); walks grow with the logarithm of the peak. A
    walk is made only while the walks so far took no more than ``budget`` (a
    fraction, 0.15) of the run's time so far (a walk can itself go past it;
    the first and the exit walk always run), except that the peak never
    doubles without a walk: a walk over the budget is put off to the next
    step unless the peak is twice that of the last walk. So the last walk
    before the end saw at least half of the final peak (2/3 while within the
    budget). What is alive at the end is always
    looked at. Each walk's advice is kept; the end merges
    them (per line and kind, the walk that saves most).
    """

    def __init__(
        self,
        threshold: int = DEFAULT_THRESHOLD,
        step: float = 1.5,
        first: int | None = None,
        budget: float = 0.15,
    ) -> None:
        self.threshold = check_threshold(threshold)
        if not step > 1:
            raise ValueError(f"step must be above 1, not {step}")
        self.step = step
        self.first = max(8 * threshold, 8 << 20) if first is None else first
        self.budget = budget
        self.base = 0
        self.started = 0.0
        self.walks: list[list[Advice]] = []
        self.skipped = 0
        self.walked = 0  # the peak (above the start) at the last walk near it
        self.vetoes: set[tuple[str, Any]] = set()
        self.lens: dict[int, list[int]] = {}  # module containers: id -> len at each look
        self.seconds = 0.0
        self.errors: list[str] = []
        self._busy = False

    # -- the walks ---------------------------------------------------------------------------

    def start(self, base: int) -> None:
        """The recording started at heap level ``base``: arm the first walk."""
        self.base = base
        self.started = time.perf_counter()
        calltree.on_peak(base + self.first, self.on_peak)

    def on_peak(self) -> None:
        """The peak reached the level armed: walk (or put it off), arm the next."""
        if self._busy:
            return
        within = self.seconds <= self.budget * (time.perf_counter() - self.started)
        if within or hooks.peak() - self.base >= 2 * self.walked:
            self.walked = hooks.peak() - self.base
            self._walk("peak")
        else:  # only the cheap look: how long the module-level containers are
            self.skipped += 1
            t0 = time.perf_counter()
            with _own_work(collect=False):
                self._track_growth()
            self.seconds += time.perf_counter() - t0
        grown = max(hooks.peak() - self.base, self.first)
        calltree.on_peak(self.base + int(grown * self.step), self.on_peak)

    def finish(self) -> None:
        """The program ended (recording still on): the last walk."""
        calltree.on_peak(0, None)
        self._walk("exit")

    def _walk(self, when: str) -> None:
        self._busy = True
        t0 = time.perf_counter()
        try:
            with _own_work(collect=False):
                self._look(when)
            # what the look made is gone with its frame: its young garbage
            # (a search's cycles) must not keep the program's objects alive
            with _own_work(collect=True):
                pass
        except Exception as exc:  # never the program's problem
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.seconds += time.perf_counter() - t0
            self._busy = False

    def _look(self, when: str) -> None:
        heap = gather()
        self._track_growth()
        walk = Walk(heap, Sites(True), self.threshold, when=when, vetoes=self.vetoes)
        lens = self.lens
        # a leak is what kept growing to the end: only the exit walk can tell
        last = (lambda w: growth.leak_rule(w, lens)) if when == "exit" else None
        self.walks.append(run_rules(walk, last=last))
        self.errors += walk.errors

    def _track_growth(self) -> None:
        try:
            for key, (_name, container) in growth.module_containers().items():
                self.lens.setdefault(key, []).append(len(container))
        except Exception as exc:
            self.errors.append(f"growth: {type(exc).__name__}: {exc}")

    # -- the end -----------------------------------------------------------------------------

    def conclude(self, raw: dict[str, Any]) -> dict[str, Any]:
        """What goes into the capture: the advice as JSON records, and how it
        was found (``raw``: the call tree's snapshot, for the line rules)."""
        t0 = time.perf_counter()
        found = self.result(figures_from_snapshot(raw, self.threshold))
        self.seconds += time.perf_counter() - t0
        return {
            "advice": [item.to_dict() for item in found],
            "advice_run": {
                "threshold": self.threshold,
                "walks": len(self.walks),
                "walks_put_off": self.skipped,
                "seconds": round(self.seconds, 3),
                "errors": self.errors[:5],
            },
        }

    def result(self, figures: Iterable[LineFigures] = ()) -> list[Advice]:
        """Everything found, merged and ranked; ``figures``: every line's, for
        the line rules."""
        from_lines = lines.line_rules(figures, self.threshold)
        merged = merge([*self.walks, from_lines])
        return ranked(_drop_vetoed(merged, self.vetoes), self.threshold)


def figures_from_snapshot(raw: dict[str, Any], threshold: int = 0) -> list[LineFigures]:
    """Per line: the high-water marks of its nodes, added up, and what its
    nodes held at the end, from a call tree snapshot (``calltree.snapshot()``).
    Only lines that held at least ``threshold`` bytes at once (the others can
    give no advice; their source is not read)."""
    import linecache

    slots = raw["slots"]
    per_line: dict[tuple[str, int], list[Any]] = {}
    for (_parent, slot, line), stats in zip(raw["nodes"], raw["stats"], strict=True):
        if slot < 0 or len(stats) < 10:
            continue
        filename, qualname, _first = slots[slot]
        entry = per_line.setdefault((filename, line), [qualname, 0, 0])
        # the line's instructions (a comprehension's append and its items)
        # have marks of their own: their sum bounds the line's from above
        entry[1] += stats[9]
        entry[2] += stats[0]
    out = []
    for (filename, lineno), (qualname, high, end) in per_line.items():
        if max(high, end) >= threshold:
            source = linecache.getline(filename, lineno).strip()
            out.append(LineFigures(Line(filename, qualname, lineno, source), high, end))
    return out


def line_advice(
    rows: Iterable[tuple[str, str, int, str, int, int]], threshold: int = DEFAULT_THRESHOLD
) -> list[Advice]:
    """Advice for a line table's rows ``(filename, qualname, line, source,
    peak, increment)``: the peak of a line above its increment is what it
    built and let go."""
    figures = [
        LineFigures(Line(f, q, n, s.strip()), max(peak, 0), max(inc, 0))
        for f, q, n, s, peak, inc in rows
    ]
    return ranked(lines.line_rules(figures, check_threshold(threshold), when="peak"), threshold)
