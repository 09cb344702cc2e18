"""What every rule gets: the gathered heap, the allocating lines, the options,
and the record of what a later walk contradicted (vetoes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memtrim.advice.rules.heap import Heap
from memtrim.advice.rules.sites import Line, Sites
from memtrim.model.advice import Advice


@dataclass
class Walk:
    """One look at the live objects (``when``: "peak", "exit" or "now").

    ``vetoes`` holds (kind, key) pairs a rule found false on this walk (a
    list that now holds a value no typecode fits, a class whose instances now
    differ in attributes): advice of that kind and key from any walk is
    dropped. ``keep`` maps an advice's ``id`` to the ``id`` of an object it
    is about, so that the holder chain can be found after ranking (for the
    kept ones only): an id, not a reference, as a reference would raise the
    object's count, which later rules read to tell what deleting would free.
    (During a walk no code of the program runs, so the object stays alive.)
    """

    heap: Heap
    sites: Sites
    threshold: int
    when: str = "now"
    vetoes: set[tuple[str, Any]] = field(default_factory=set)
    keep: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def advice(self, line: Line | None, about: Any, **fields: Any) -> Advice:
        """An :class:`Advice` at ``line`` (None: not known), about the object
        ``about`` (its holder chain is looked up later)."""
        found = Advice(
            filename=line.filename if line else "",
            lineno=line.lineno if line else 0,
            source=line.source if line else "",
            qualname=line.qualname if line else "",
            when=self.when,
            **fields,
        )
        self.keep[id(found)] = id(about)
        return found

    def worth(self, saving: int) -> bool:
        """Is a group that saves this much worth the (costlier) measuring?
        (A quarter of the threshold: groups merge across walks; never nothing.)"""
        return saving > 0 and saving >= self.threshold // 4
