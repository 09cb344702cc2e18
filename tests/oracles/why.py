"""Oracle for ``memtrim.engine.walks.path``: the same search in Python.

This is the Python twin that ``memtrim.objects.referrers`` used when the C
extension was missing; the tests run ``why()`` through both. :func:`path`
takes the native function's arguments and returns its chain
``[root, ..., target]`` (or None).
"""

from __future__ import annotations

import gc
from typing import Any

from memtrim.objects import _layout


def path(roots: list[Any], target: Any, skip: list[Any]) -> list[Any] | None:
    """``walks.path`` in Python: breadth first, in the same order."""
    parents: dict[int, Any] = {}
    keep: dict[int, Any] = {}
    skipped = {id(o) for o in skip}
    level = []
    for root in roots:
        if id(root) not in parents:
            parents[id(root)] = None
            keep[id(root)] = root
            level.append(root)
    while level and id(target) not in parents:
        nxt = []
        for obj in level:
            if obj is target or (not gc.is_tracked(obj) and not _is_gc_type(obj)):
                continue
            for ref in gc.get_referents(obj):
                if id(ref) in skipped or id(ref) in parents:
                    continue
                parents[id(ref)] = obj
                keep[id(ref)] = ref
                nxt.append(ref)
            if id(target) in parents:
                break
        level = nxt
    if id(target) not in parents:
        return None
    chain = [target]
    while parents[id(chain[-1])] is not None:
        chain.append(parents[id(chain[-1])])
    return chain[::-1]


def _is_gc_type(obj: Any) -> bool:
    return bool(_layout.tattr(type(obj), "__flags__") & _layout.TPFLAGS_HAVE_GC)
