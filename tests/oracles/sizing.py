"""Oracle for ``memtrim.engine.walks.Walker``: the same sizing walk in Python.

This is the Python twin (``PyWalk``) that ``memtrim.objects.sizing`` used
when the C extension was missing; the tests compare the native walk with it
object by object. :class:`Walker` takes the native walker's arguments
(``memtrim.objects.sizing.walker_args``) and has its methods. It asks
``describe(obj, depth)`` about every object: ``classify``, ``mask``,
``limit``, ``footprint`` and ``bytes_leaf`` are the native walk's shortcuts
for what ``describe`` answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Describe = Callable[[Any, int], tuple[int, list[Any]]]


class Walker:
    """The sizing walk in Python: what one call has seen, and walks from there.

    Every object sized is kept alive until the call ends (``keep``): referents
    made on the fly (a class's ``__dict__`` proxy, a bound method, an inline
    values stand-in) would otherwise be freed after sizing and their ids
    reused by the next such object, which would then be skipped as seen.
    """

    def __init__(
        self,
        classify: Any,
        describe: Describe,
        standin: type,
        mask: int,
        limit: int,
        footprint: bool,
        bytes_leaf: bool,
    ) -> None:
        self.describe = describe
        self.seen: set[int] = set()
        self.keep: list[Any] = []

    def exclude(self, objs: list[Any]) -> None:
        """Mark objects seen without sizing them (top-level objects)."""
        for obj in objs:
            self.claim(obj)

    def claim(self, obj: Any) -> bool:
        """Mark ``obj`` seen; False if it was seen already."""
        key = id(obj)
        if key in self.seen:
            return False
        self.seen.add(key)
        self.keep.append(obj)
        return True

    def sizes(self, objs: list[Any]) -> list[int]:
        """Deep size of each top-level object (0 for a repeat in ``objs``)."""
        done: set[int] = set()
        totals = []
        for obj in objs:
            self.claim(obj)
            first = id(obj) not in done
            done.add(id(obj))
            totals.append(self._walk(obj, 0)[0] if first else 0)
        return totals

    def deep(self, objs: list[Any], depth: int) -> list[int]:
        """Claim each object found at ``depth`` in turn: ``[size, flat, ...]``,
        ``-1, -1`` for one seen before."""
        out: list[int] = []
        for obj in objs:
            out += self._walk(obj, depth) if self.claim(obj) else (-1, -1)
        return out

    def _walk(self, obj: Any, depth: int) -> tuple[int, int]:
        """(deep size, own flat size) of ``obj``, already claimed."""
        describe = self.describe
        total = top_flat = 0
        stack: list[tuple[Any, int]] = [(obj, depth)]
        first = True
        while stack:
            current, level = stack.pop()
            if not first and not self.claim(current):
                continue
            size, refs = describe(current, level)
            if first:
                top_flat, first = size, False
            total += size
            if refs:
                stack.extend((ref, level + 1) for ref in reversed(refs))
        return total, top_flat
