"""Oracle for ``memtrim.engine.walks.census``: the same census in Python.

This is the Python twin that ``memtrim.objects.census`` used when the C
extension was missing; the tests compare the native census with it.
:func:`census` takes the native function's arguments and returns its table
``{type: (count, bytes, largest)}``.

Bytes are ``sizing.getsizeof`` plus the inline values storage of an instance
whose ``__dict__`` was never built (``_layout.inline_nbytes``). Untracked
objects are found through ``gc.get_referents`` from every tracked object and
from the local variables of every thread's frames, read through
``f_locals`` (which creates frame objects; the native walk does not).
"""

from __future__ import annotations

import contextlib
import gc
import sys
from typing import Any

from memtrim.objects import _layout


def census(
    objs: list[Any], skip: list[Any], skip_globals: list[dict]
) -> dict[type, tuple[int, int, int]]:
    """``walks.census`` in Python. This module's own frames are left out too,
    as memtrim's are (the twin used to run inside memtrim)."""
    own = [*skip_globals, globals()]
    seen = {id(o) for o in skip}
    rows: dict[type, list[int]] = {}

    def count(obj: Any) -> None:
        size = _sizeof(obj)
        row = rows.get(type(obj))
        if row is None:
            rows[type(obj)] = [1, size, size]
        else:
            row[0] += 1
            row[1] += size
            row[2] = max(row[2], size)

    def untracked_from(todo: list[Any]) -> None:
        while todo:
            for ref in gc.get_referents(todo.pop()):
                if not gc.is_tracked(ref) and id(ref) not in seen:
                    seen.add(id(ref))
                    count(ref)
                    todo.append(ref)

    for obj in objs:
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        count(obj)
        untracked_from([obj])
    seen.add(id(seen))
    for value in frame_locals(own):  # a running frame does not report its locals
        if not gc.is_tracked(value) and id(value) not in seen:
            seen.add(id(value))
            count(value)
            untracked_from([value])
    return {tp: (row[0], row[1], row[2]) for tp, row in rows.items()}


def _sizeof(obj: Any) -> int:
    from memtrim.objects.sizing import getsizeof

    return getsizeof(obj) + _layout.inline_nbytes(obj)


def frame_locals(own: list[dict]) -> list[Any]:
    """The local variables of every frame of every thread, except frames
    running with globals in ``own`` (it creates frame objects, which the native
    walk does not)."""
    values: list[Any] = []
    skip = {id(ns) for ns in own}
    for frame in sys._current_frames().values():
        while frame is not None:
            if id(frame.f_globals) not in skip:
                with contextlib.suppress(Exception):
                    values += list(frame.f_locals.values())
            frame = frame.f_back
    return values
