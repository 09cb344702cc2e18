"""``memtrim.explain()``: the RSS now, in parts that add up to it."""

from __future__ import annotations

import shutil

from memtrim.engine import memory
from memtrim.model.rss import RssBreakdown, breakdown


class Explanation(RssBreakdown):
    """An :class:`~memtrim.model.rss.RssBreakdown` that prints as a table."""

    __slots__ = ()

    def __str__(self) -> str:
        from memtrim.rss.render.text import format_text

        return format_text(self, shutil.get_terminal_size((100, 24)).columns)

    def __repr__(self) -> str:
        return str(self)


def explain() -> Explanation:
    """What the process's resident memory (RSS) is made of, now.

    Parts that add up to the RSS read at the same moment: live Python objects,
    free space pinned in pymalloc's arenas, native memory of C libraries,
    malloc's free space, thread stacks, shared libraries and files, and what
    is not accounted for. Callable at any time; with memtrim's allocator hooks
    in (``memtrim run``, ``track()``, a line profiler) Python's and native
    blocks are told apart. Prints as a table; ``.to_dict()`` for JSON.
    """
    result = breakdown(memory.read(), "now")
    return Explanation(
        result.rss, result.parts, result.when, result.facts, result.notes, result.libraries
    )
