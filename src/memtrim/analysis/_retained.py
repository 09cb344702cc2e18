"""What an object keeps alive on its own.

1. Walk what ``obj`` reaches under the sizing rules (the ``asizeof`` set).
2. Mark every member of that set that something outside it refers to: any
   GC-tracked object, any untracked object found through one, or any local
   variable of any thread's frames (memtrim's own frames and ``obj`` excluded),
   and every immortal object (3.12+).
3. Whatever a marked member refers to is marked too (real references,
   ``gc.get_referents``). What stays unmarked would be freed with ``obj``.
"""

from __future__ import annotations

import gc
import sys
import types
from dataclasses import dataclass
from typing import Any

from memtrim.analysis import _kinds, sizing

_CHUNK = 4096
_IMMORTAL = 1 << 30  # refcounts of immortal objects start far above any real count


@dataclass(frozen=True)
class Retained:
    """``retained``: bytes freed if the object went away; ``reachable``: its asizeof."""

    retained: int
    reachable: int
    objects: int  # how many objects would be freed


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


def _external_holds(members: dict[int, Any], obj: Any, skip: set[int]) -> set[int]:
    """Members referred to from outside the member set."""
    held: set[int] = set()
    outside = [o for o in gc.get_objects() if id(o) not in members and id(o) not in skip]
    skip = skip | {id(outside)}
    seen_untracked: set[int] = set()
    while outside:
        chunk, outside = outside[:_CHUNK], outside[_CHUNK:]
        for ref in gc.get_referents(*chunk):
            key = id(ref)
            if key in members:
                if ref is not obj:
                    held.add(key)
            elif key not in skip and not gc.is_tracked(ref) and key not in seen_untracked:
                seen_untracked.add(key)
                outside.append(ref)  # an untracked tuple can hold members too
                if type(ref) is types.CodeType:  # not a GC type: list its constants
                    outside.extend(_code_refs(ref))
    del chunk, outside
    return held


def _immortal(members: dict[int, Any]) -> set[int]:
    """Immortal objects (3.12+: None, small ints, interned strings) are never freed."""
    if sys.version_info < (3, 12):
        return set()
    return {key for key, obj in members.items() if sys.getrefcount(obj) >= _IMMORTAL}


def _code_refs(code: types.CodeType) -> list[Any]:
    names = ("co_consts", "co_names", "co_varnames", "co_freevars", "co_cellvars")
    return [getattr(code, name) for name in names if hasattr(code, name)]


def _frame_holds(members: dict[int, Any], obj: Any, own: set[int]) -> set[int]:
    held: set[int] = set()
    for frame in sys._current_frames().values():
        while frame is not None:
            if id(frame) not in own:
                try:
                    values = list(frame.f_locals.values())
                except Exception:
                    values = []
                held.update(id(v) for v in values if id(v) in members and v is not obj)
            frame = frame.f_back
    return held


def _propagate(held: set[int], members: dict[int, Any], obj: Any) -> set[int]:
    todo = list(held)
    while todo:
        for ref in gc.get_referents(members[todo.pop()]):
            key = id(ref)
            if key in members and key not in held and ref is not obj:
                held.add(key)
                todo.append(key)
    return held


def retained(obj: Any, opts: sizing.Options | None = None) -> Retained:
    """Bytes only ``obj`` keeps alive, next to its reachable (asizeof) size."""
    opts = opts or sizing.Options()
    gc.collect()  # unreachable cycles still refer to things; they are not holders
    members, flats, owner = _reach(obj, opts)
    own = {id(sys._getframe(i)) for i in range(2) if _has_frame(i)}  # this and the API frame
    skip = own | {id(members), id(flats), id(owner)}
    # Frames first: on 3.11/3.12 reading f_locals re-syncs the frame's locals
    # snapshot dict, which the heap scan below would otherwise see stale.
    held = _frame_holds(members, obj, own)
    held |= _external_holds(members, obj, skip)
    held |= _immortal(members)
    held = _propagate(held, members, obj)
    freed = [key for key in members if key not in held and owner.get(key) not in held]
    result = Retained(sum(flats.get(k, 0) for k in freed), sum(flats.values()), len(freed))
    members.clear()  # break any frame <-> member cycle right away
    return result


def _has_frame(depth: int) -> bool:
    try:
        sys._getframe(depth + 1)
    except ValueError:
        return False
    return True
