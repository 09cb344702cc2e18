"""The call tree: attribute every allocation to the code that made it (``memtrim run``).

A thin wrapper over calltree.c, which listens to the allocator hooks while a
recording runs. (Not to be confused with ``memtrim record``, memory over
time, which needs no call tree.) There is one call tree per process:
:func:`start` while a recording runs raises :class:`RuntimeError` instead of
erasing it. The recording's owner holds the hooks (a :class:`hooks.Handle`)
from before :func:`start` until after :func:`clear`, which frees the tree and
the per-block ids.

Lifecycle::

    handle = hooks.acquire("memtrim run")
    calltree.start(exact=False, sample_bytes=512 * 1024, transparent=[...])
    ...                      # the program runs
    calltree.stop()          # stop attributing; the data stays
    data = calltree.snapshot()
    calltree.clear()         # free it
    handle.release()
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from memtrim.engine import load

_engine = load()


def start(
    exact: bool,
    sample_bytes: int,
    transparent: Sequence[str] = (),
    seed: int = 0,
    cframes: bool = False,
) -> None:
    """Start attributing allocations (the peak restarts from the current level).

    ``exact``: charge every block to its full stack (else to its line, with full
    stacks sampled every ``sample_bytes`` bytes on average; 0: no sampling).
    ``transparent``: file names whose frames are never charged (memtrim's own
    frames inside the program's calls). ``seed`` (0 to 2**64-1) fixes the
    sampled stacks: the same program recorded with the same seed samples the
    same allocations. ``cframes``: the sampled stacks of native allocations go
    on below their Python line with the C functions that made them (default
    mode only). The data of a stopped recording that was not cleared is freed
    first.

    Raises :class:`RuntimeError` if a recording is already running in this
    process, or if the hooks are not installed.
    """
    _engine.tree_start(
        bool(exact), int(sample_bytes), list(transparent) or None, int(seed), bool(cframes)
    )


def stop() -> None:
    """Stop attributing; the data stays for :func:`snapshot` (no-op if not recording)."""
    _engine.tree_stop()


def snapshot() -> dict[str, Any]:
    """The recording as plain data (see ``mt_tree_snapshot`` in calltree.c)."""
    return _engine.tree_snapshot()


def clear() -> None:
    """Stop if needed, and free the recording (its tree, slots and the blocks' ids)."""
    _engine.tree_clear()


def is_recording() -> bool:
    """Is a recording running in this process?"""
    return bool(_engine.tree_running())


# -- the advisor's hooks into a recording --------------------------------------------------


def block_nodes(objs: Sequence[Any]) -> list[int]:
    """For each object, the node its block was charged to (-1: not known:
    allocated before the recording or without the GIL, or not a block of its
    own). Valid while the recording's data exists (until :func:`clear`)."""
    return _engine.tree_block_nodes(objs)


def node_site(node: int) -> tuple[str, str, int, int, int] | None:
    """``(filename, qualname, first line, line, parent node)`` of a node, or
    None for a thread root or a C frame."""
    return _engine.tree_node_site(int(node))


def on_peak(at: int, callback: Callable[[], object] | None) -> None:
    """Call ``callback()`` once, from the main thread at its next bytecode,
    when the heap's peak (an absolute level, see :func:`hooks.level`) first
    reaches ``at``; ``None`` disarms. The callback's ``Exception`` s are
    swallowed (it must report its own); a ``KeyboardInterrupt`` raised inside
    it goes on into the program. Cleared with the recording."""
    _engine.tree_on_peak(int(at), callback)


def own_enter() -> None:
    """Start memtrim's own work in this thread (see :func:`own`); nested."""
    _engine.own_enter()


def own_exit() -> None:
    """Undo one :func:`own_enter`."""
    _engine.own_exit()


@contextlib.contextmanager
def own() -> Iterator[None]:
    """memtrim's own work in the program's thread while the hooks count: the
    blocks this thread allocates in the block are not counted (not the
    program's), while what it frees still is (it may be a counted block)."""
    _engine.own_enter()
    try:
        yield
    finally:
        _engine.own_exit()
