"""The advisor's handle on a run, light to import: the program runs with it.

``memtrim run --advise`` hands :class:`RunAdvisor` to the profiler before the
program starts. Everything the advisor needs to look at objects (its rules,
the object walks, the table renderer) is imported only when it first looks:
imported up front, those modules' objects would sit in the heap for the whole
run, and a program that collects garbage often (every full collection
traverses every tracked object) would pay for them at each collection.
"""

from __future__ import annotations

import time
from typing import Any

from memtrim.engine import calltree
from memtrim.model.advice import DEFAULT_THRESHOLD, check_threshold


class RunAdvisor:
    """Arms the first walk; the walker itself (``memtrim.advice.session.RunWalker``,
    where walks and their cost are described) is made when the first walk is
    due. Options: ``threshold`` (bytes), ``step``, ``first``, ``budget``."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD, **options: Any) -> None:
        self.threshold = check_threshold(threshold)
        self.options = options
        self.first = options.get("first") or max(8 * threshold, 8 << 20)
        self.base = 0
        self.started = 0.0
        self._walker: Any = None

    def start(self, base: int) -> None:
        """The recording started at heap level ``base``: arm the first walk."""
        self.base = base
        self.started = time.perf_counter()
        calltree.on_peak(base + self.first, self._first_peak)

    def walker(self) -> Any:
        """The walker, made (and its modules imported) on first use."""
        if self._walker is None:
            # the import is memtrim's own work: its modules are not the program's
            calltree.own_enter()
            try:
                from memtrim.advice.session import RunWalker

                walker = RunWalker(self.threshold, **{**self.options, "first": self.first})
            finally:
                calltree.own_exit()
            walker.base = self.base
            walker.started = self.started
            self._walker = walker
        return self._walker

    def _first_peak(self) -> None:
        self.walker().on_peak()  # it arms the next walk itself

    def finish(self) -> None:
        """The program ended (recording still on): the last walk."""
        calltree.on_peak(0, None)
        self.walker().finish()

    def conclude(self, raw: dict[str, Any]) -> dict[str, Any]:
        """What goes into the capture (see ``RunWalker.conclude``)."""
        return self.walker().conclude(raw)
