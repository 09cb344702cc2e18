"""Oracle for ``memtrim.engine.walks.retained``: the same computation in Python.

This is the Python twin that ``memtrim.objects._retained`` used when the C
extension was missing; the tests compare the native walk with it object by
object. :func:`retained` takes the native function's arguments
(``memtrim.objects.sizing.walker_args``) and returns its tuple
``(retained bytes, reachable bytes, objects freed)``.

References are what ``tp_traverse`` reports (``gc.get_referents``), plus what
it leaves out: the str keys of a combined dict, the parts of a code object
(``objects.c``: ``for_each_edge``). The reference counts below subtract this
module's own references exactly: do not add locals that hold members.
"""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Callable
from typing import Any

from memtrim.objects import _layout

Describe = Callable[[Any, int], tuple[int, list[Any]]]


def retained(
    obj: Any,
    classify: Any,
    describe: Describe,
    standin: type,
    mask: int,
    limit: int,
    footprint: bool,
    bytes_leaf: bool,
) -> tuple[int, int, int]:
    """``walks.retained`` in Python. ``describe`` carries the sizing options
    (``classify``, ``mask``, ``limit``, ``footprint`` and ``bytes_leaf`` are
    the native walk's shortcuts for what ``describe`` answers)."""
    members, flats, owner = _reach(obj, describe, standin)
    counts = _Counts(members)
    counts.run()
    held = _held(counts, members, obj)
    freed = [key for key in members if key not in held and owner.get(key) not in held]
    count = sum(1 for key in freed if key not in owner)
    result = (sum(flats.get(k, 0) for k in freed), sum(flats.values()), count)
    counts.inside.clear()
    members.clear()
    return result


def _reach(
    obj: Any, describe: Describe, standin: type
) -> tuple[dict[int, Any], dict[int, int], dict[int, int]]:
    """Members (id -> object), flat sizes, and stand-in -> owning instance."""
    members: dict[int, Any] = {id(obj): obj}
    flats: dict[int, int] = {}
    owner: dict[int, int] = {}
    stack = [(obj, 0)]
    while stack:
        current, depth = stack.pop()
        size, refs = describe(current, depth)
        flats[id(current)] = size
        for ref in reversed(refs):
            if id(ref) in members:
                continue
            members[id(ref)] = ref
            if type(ref) is standin:
                owner[id(ref)] = id(current)
            stack.append((ref, depth + 1))
    return members, flats, owner


def _edges(obj: Any) -> list[Any]:
    """The references ``obj`` owns that can be seen (``objects.c``: ``for_each_edge``)."""
    if type(obj) is types.CodeType:  # not a GC type: list what it holds
        names = ("co_consts", "co_names", "co_filename", "co_name", "co_qualname")
        names += ("co_linetable", "co_exceptiontable")
        return [getattr(obj, name) for name in names if hasattr(obj, name)]
    refs = gc.get_referents(obj)
    if issubclass(type(obj), dict) and _combined_str_keys(obj):
        refs += list(dict.keys(obj))
    return refs


def _combined_str_keys(mapping: dict) -> bool:
    """A dict whose table holds str keys that ``tp_traverse`` does not report."""
    layout = _layout
    if not layout._SUPPORTED or layout._FREE_THREADED:
        return False
    keys = layout._word(id(mapping) + 4 * layout.WORD)  # ob_refcnt, ob_type, ma_used, tag
    values = layout._word(id(mapping) + 5 * layout.WORD)
    return not values and layout._byte(keys + 10) == 1


class _Counts:
    """References each object of ``R`` gets from ``R``; ``R`` grows as objects
    are found all of whose references come from it."""

    def __init__(self, members: dict[int, Any]) -> None:
        self.inside: dict[int, Any] = dict(members)
        self.count: dict[int, int] = dict.fromkeys(members, 0)
        self.candidates: dict[int, int] = {}

    def run(self) -> None:
        todo = list(self.inside.values())
        while todo:
            for ref in _edges(todo.pop()):
                self._edge(ref, todo)
        del todo

    def _edge(self, ref: Any, todo: list[Any]) -> None:
        key = id(ref)
        if key in self.count:
            self.count[key] += 1
            return
        seen = self.candidates.get(key, 0) + 1
        # ours: getrefcount's argument, this frame's ``ref``, run()'s loop
        # variable and the list ``_edges`` returned
        if seen >= sys.getrefcount(ref) - 4:
            self.candidates.pop(key, None)
            self.inside[key] = ref
            self.count[key] = seen
            todo.append(ref)
        else:
            self.candidates[key] = seen


def _held(counts: _Counts, members: dict[int, Any], obj: Any) -> set[int]:
    held: set[int] = set()
    for key, extra in _outside_refs(counts, members):
        if extra > 0 and members[key] is not obj:
            held.add(key)
    todo = [members[key] for key in held]
    while todo:
        for ref in _edges(todo.pop()):
            key = id(ref)
            if key in counts.inside and key not in held and ref is not obj:
                held.add(key)
                todo.append(ref)
    return held


def _outside_refs(counts: _Counts, members: dict[int, Any]) -> list[tuple[int, int]]:
    """(id, references from outside R) of each member. Ours: ``members`` and
    ``counts.inside`` hold one each, ``member`` and getrefcount's argument one
    each (no ``items()``: its reused result tuple would hold one more)."""
    found = []
    for key in list(members):
        member = members[key]
        found.append((key, sys.getrefcount(member) - 4 - counts.count[key]))
    return found
