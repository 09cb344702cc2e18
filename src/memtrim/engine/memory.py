"""What this process's memory is made of, read now: the facts of the RSS breakdown.

Plain numbers (bytes as ints), read in C in one go with the GIL held, so that
they describe one moment (see ``rss.c``):

- the kernel's view (``/proc/self/smaps``): resident bytes summed into shared
  libraries (and the executable), other files, thread stacks and anonymous
  memory, and malloc's main heap (``[heap]``);
- pymalloc's own statistics of all its arenas, and the arenas allocated since
  the hooks went in, walked pool by pool (live blocks, resident bytes from
  ``mincore``, the arenas pinned by few live blocks);
- glibc's ``mallinfo2()``: malloc's heap in use, free, releasable at the top;
- the allocator hooks' counters: Python's blocks in malloc's heap, native
  blocks, the hooked libraries' anonymous mappings, and the bytes of big
  blocks on pages never touched.

:func:`memtrim.model.rss.breakdown` turns them into parts that add up to the
RSS. ``watch_start``/``watch_stop`` read them again near the heap's peak, from
inside the allocation that makes a new peak (no Python object is made there).
"""

from __future__ import annotations

from typing import Any

from memtrim.engine import load

_engine = load()
ARENA_SIZE = 1 << 20  # pymalloc's arenas, 3.11-3.13 on 64-bit systems
POOL_SIZE = 16 << 10


def read() -> dict[str, Any]:
    """The facts, now (keys: see ``mt_rss_dict`` in ``rss.c``)."""
    return dict(_engine.rss_facts())


def watch_start(step: float = 0.05, min_step: int = 1 << 20) -> None:
    """Read the facts again whenever the heap reaches a new peak ``step`` (a
    fraction, at least ``min_step`` bytes) above the last reading."""
    _engine.rss_watch_start(step, min_step)


def watch_stop() -> dict[str, Any] | None:
    """Stop watching; the facts read nearest the peak, or ``None``."""
    facts = _engine.rss_watch_stop()
    return None if facts is None else dict(facts)


def arenas() -> list[tuple[int, int, int, int, int, int]]:
    """``(base, size, resident, live blocks, live bytes, pools in use)`` of the
    arenas allocated since the hooks went in (empty without them)."""
    return [tuple(row) for row in _engine.arenas_walk()]  # type: ignore[misc]


def pymalloc_text() -> str:
    """pymalloc's statistics (``sys._debugmallocstats``' text), not printed."""
    return str(_engine.pymalloc_stats())
