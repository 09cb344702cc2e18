"""What an object keeps alive on its own, from reference counts.

1. Walk what ``obj`` reaches under the sizing rules (the ``asizeof`` set, the
   *members*).
2. ``R`` is the members plus every object all of whose references come from
   ``R`` (an object reached from ``R`` whose references from ``R`` add up to
   its reference count: a frame object inside a generator, a function's code
   and constants...).
3. A member whose reference count is higher than the references it gets from
   ``R`` is kept alive by something else (a module global, another
   container, a local variable of any thread, a C static, an immortal
   object's huge count), and so is everything it refers to in ``R``.
4. The other members would be freed with ``obj``.

References are what ``tp_traverse`` reports (``gc.get_referents``), plus what
it leaves out: the str keys of a combined dict, the parts of a code object. A
reference nothing reports only makes its target look held, never freed.
The native ``retained`` in ``memtrim.engine._objects`` does this in C;
:func:`_retained_py` is the same in Python (no extension).
"""

from __future__ import annotations

import gc
import sys
import types
from dataclasses import dataclass
from typing import Any

from memtrim.objects import _kinds, sizing

_IMMORTAL = 1 << 30  # refcounts of immortal objects start far above any real count


@dataclass(frozen=True)
class Retained:
    """``retained``: bytes freed if the object went away; ``reachable``: its asizeof."""

    retained: int
    reachable: int
    objects: int  # how many objects would be freed (inline values count with their instance)


def retained(obj: Any, opts: sizing.Options | None = None, native: Any = "auto") -> Retained:
    """Bytes only ``obj`` keeps alive, next to its reachable (asizeof) size."""
    opts = opts or sizing.Options()
    native = sizing._native if native == "auto" else native
    gc.collect()  # unreachable cycles still refer to things; they are not holders
    if native is not None:
        return Retained(*native.retained(obj, *sizing.walker_args(opts)))
    return _retained_py(obj, opts)


def _reach(obj: Any, opts: sizing.Options) -> tuple[dict[int, Any], dict[int, int], dict[int, int]]:
    """Members (id -> object), flat sizes, and stand-in -> owning instance."""
    members: dict[int, Any] = {id(obj): obj}
    flats: dict[int, int] = {}
    owner: dict[int, int] = {}
    stack = [(obj, 0)]
    while stack:
        current, depth = stack.pop()
        size, refs = sizing.describe(current, opts, depth)
        flats[id(current)] = size
        for ref in reversed(refs):
            if id(ref) in members:
                continue
            members[id(ref)] = ref
            if type(ref) is _kinds.InlineDict:
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
    layout = _kinds._layout
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


def _retained_py(obj: Any, opts: sizing.Options) -> Retained:
    members, flats, owner = _reach(obj, opts)
    counts = _Counts(members)
    counts.run()
    held = _held(counts, members, obj)
    freed = [key for key in members if key not in held and owner.get(key) not in held]
    count = sum(1 for key in freed if key not in owner)
    result = Retained(sum(flats.get(k, 0) for k in freed), sum(flats.values()), count)
    counts.inside.clear()
    members.clear()
    return result
