"""Oracle for ``memtrim.engine.walks.frame_values``: the same read with ctypes.

This is the Python twin that ``memtrim.objects._kinds`` used when the C
extension was missing (it was ``memtrim.objects._layout.frame_values``); the
tests size and name generators through both. Layout read (64-bit builds,
default GIL build, 3.11 to 3.13):

* Generators, coroutines and async generators: the interpreter frame is the
  last member of the object, its ``localsplus`` array starts at
  ``tp_basicsize`` (the type's basic size is
  ``offsetof(gi_iframe) + offsetof(localsplus)``), ``stacktop`` (an int) is
  the word before it, and ``gi_frame_state`` (an int8) sits 5 bytes before the
  frame (72 bytes before ``localsplus``).
"""

from __future__ import annotations

import ctypes
from typing import Any

from memtrim.objects import _layout
from memtrim.objects._layout import TPFLAGS_HEAPTYPE, WORD, _deref, _word, tattr

_GEN_TYPES = ("generator", "coroutine", "async_generator")
_FRAME_COMPLETED = 1  # gi_frame_state: < 0 suspended or not started, 0 running


def _is_generator_type(tp: type) -> bool:
    return (
        not tattr(tp, "__flags__") & TPFLAGS_HEAPTYPE
        and tattr(tp, "__module__") == "builtins"
        and tattr(tp, "__name__") in _GEN_TYPES
    )


def _local_names(code: Any) -> list[str]:
    """``co_localsplusnames``: the names of the frame's local, cell and free slots."""
    names = []
    while True:
        try:
            names.append(code._varname_from_oparg(len(names)))
        except (IndexError, AttributeError):
            return names


def frame_values(gen: object) -> list[tuple[str, Any]] | None:
    """What a generator's (coroutine's) frame holds, read without creating a frame object.

    ``[(local name, value), ...]`` for every set local, cell and free slot,
    then ``("", value)`` for the evaluation stack of a suspended generator (a
    ``for`` loop's iterator...). Empty once the generator finished; None if
    ``gen`` is not a generator or the layout is not supported. (Reading
    ``gi_frame`` would create a frame object that stays with the generator.)
    """
    tp = type(gen)
    if not _layout._SUPPORTED or _layout._FREE_THREADED or not _is_generator_type(tp):
        return None
    localsplus = id(gen) + tattr(tp, "__basicsize__")
    state = ctypes.c_int8.from_address(localsplus - 72 - 5).value
    if state >= _FRAME_COMPLETED:
        return []
    code = object.__getattribute__(gen, _CODE_ATTR[tp.__name__])
    names = _local_names(code)
    found = []
    for i, name in enumerate(names):
        ptr = _word(localsplus + i * WORD)
        if ptr:
            found.append((name, _deref(ptr)))
    if state < 0:  # suspended or not started: stacktop is valid
        top = ctypes.c_int.from_address(localsplus - WORD).value
        for i in range(len(names), max(top, len(names))):
            ptr = _word(localsplus + i * WORD)
            if ptr:
                found.append(("", _deref(ptr)))
    return found


_CODE_ATTR = {"generator": "gi_code", "coroutine": "cr_code", "async_generator": "ag_code"}
