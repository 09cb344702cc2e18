"""The live objects the rules look at, gathered once per walk.

The garbage collector knows the containers it tracks; atoms (``str``,
``bytes``, ``int``, ``float``) and the containers it stopped tracking
(tuples and dicts that hold only atoms) are found as the referents of the
tracked ones, through ``gc.get_referents`` (the types' own C traversal: no
user code runs). Only exact builtin types are kept, so that reading them
never calls a user's method.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from typing import Any

from memtrim.engine import walks
from memtrim.objects import _layout

#: Sequences shorter than this are not looked at for the array rule.
MIN_ITEMS = 16
#: Classes with fewer live instances are not looked at for the slots rule.
MIN_INSTANCES = 1000
_BATCH = 4096


@dataclass
class Heap:
    """The candidates of one walk, by what the rules need."""

    seqs: list[Any] = field(default_factory=list)  # exact list/tuple, >= MIN_ITEMS items
    dicts: list[dict] = field(default_factory=list)  # exact dicts, all keys exact str
    strs: list[Any] = field(default_factory=list)  # exact str / bytes
    sets: list[Any] = field(default_factory=list)  # exact set / frozenset
    instances: dict[type, list[Any]] = field(default_factory=dict)
    arrays: list[Any] = field(default_factory=list)  # numpy.ndarray
    frames: list[Any] = field(default_factory=list)  # pandas.DataFrame
    caches: list[Any] = field(default_factory=list)  # functools lru_cache wrappers
    other: set[type] = field(default_factory=set)  # types that are none of the above
    objects: int = 0


def _plain_class(tp: type) -> bool:
    """Instances of ``tp`` have a managed ``__dict__`` and ``tp`` is a class of
    the program's (a heap type that is not a builtin's subclass)."""
    if not _layout.has_managed_dict(tp):
        return False
    if not _layout.tattr(tp, "__flags__") & _layout.TPFLAGS_HEAPTYPE:
        return False
    mro = _layout.tattr(tp, "__mro__")
    return all(k is object or _layout.tattr(k, "__flags__") & _layout.TPFLAGS_HEAPTYPE for k in mro)


def _own_class(tp: type) -> bool:
    """A class of memtrim's (its records, the walk's own bookkeeping)."""
    module = _layout.tattr(tp, "__module__")
    return type(module) is str and (module == "memtrim" or module.startswith("memtrim."))


def _optional_types() -> tuple[Any, Any, Any]:
    """numpy's ndarray, pandas' DataFrame and functools' lru_cache wrapper, if
    those modules were imported by the program (never imported here)."""
    numpy = sys.modules.get("numpy")
    pandas = sys.modules.get("pandas")
    functools = sys.modules.get("functools")
    return (
        getattr(numpy, "ndarray", None) if numpy else None,
        getattr(pandas, "DataFrame", None) if pandas else None,
        getattr(functools, "_lru_cache_wrapper", None) if functools else None,
    )


def _sort(heap: Heap, obj: Any, tp: type, special: tuple[Any, Any, Any]) -> None:
    if tp is list or tp is tuple:
        if len(obj) >= MIN_ITEMS:
            heap.seqs.append(obj)
    elif tp is dict:
        heap.dicts.append(obj)
    elif tp is str or tp is bytes:
        heap.strs.append(obj)
    elif tp is set or tp is frozenset:
        heap.sets.append(obj)
    elif tp is special[0]:
        heap.arrays.append(obj)
    elif tp is special[1]:
        heap.frames.append(obj)
    elif tp is special[2]:
        heap.caches.append(obj)
    else:
        known = heap.instances.get(tp)
        if known is not None:
            known.append(obj)
        elif tp not in heap.other:
            if _plain_class(tp) and not _own_class(tp):
                heap.instances[tp] = [obj]
            else:
                heap.other.add(tp)


_UNTRACKED = (str, bytes, tuple, dict)
_DATA = (str, bytes, tuple, dict, list, set, frozenset)


def _followed(tp: type, special: tuple[Any, Any, Any]) -> bool:
    """From given objects: into data (containers, strings, instances), never
    into classes, modules or functions (they lead to the whole heap)."""
    return tp in _DATA or tp in special or _plain_class(tp)


def gather(roots: list[Any] | None = None, skip: set[int] | None = None) -> Heap:
    """The candidates among every live object (``roots`` None) or among what
    ``roots`` reach. ``skip``: ids never entered (the caller's own objects)."""
    special = _optional_types()
    if roots is None:
        return _everything(special, set(skip or ()))
    return _reached(roots, special, set(skip or ()))


def _everything(special: tuple[Any, Any, Any], skip: set[int]) -> Heap:
    tracked = gc.get_objects()
    heap = Heap()  # after: it must not find itself (a cycle would outlive the walk)
    for obj in tracked:
        if id(obj) not in skip:
            _sort(heap, obj, type(obj), special)
    # untracked strs, bytes, atomic tuples and dicts, found in C (each once);
    # numpy arrays are never tracked (no references of their own to report)
    wanted = _UNTRACKED + ((special[0],) if special[0] is not None else ())
    for obj in walks.untracked(tracked, wanted):
        _sort(heap, obj, type(obj), special)
    heap.objects = len(tracked)
    return heap


def _reached(roots: list[Any], special: tuple[Any, Any, Any], skip: set[int]) -> Heap:
    heap = Heap()
    todo = [o for o in roots if id(o) not in skip]
    seen = {id(o) for o in todo} | skip
    follow: dict[type, bool] = {}
    while todo:
        found: list[Any] = []
        for start in range(0, len(todo), _BATCH):
            chunk = todo[start : start + _BATCH]
            for obj in chunk:
                _sort(heap, obj, type(obj), special)
            heap.objects += len(chunk)
            for ref in gc.get_referents(*chunk):
                tp = type(ref)
                entered = follow.get(tp)
                if entered is None:
                    entered = follow[tp] = _followed(tp, special)
                if entered and id(ref) not in seen:
                    seen.add(id(ref))
                    found.append(ref)
        todo = found
    return heap
