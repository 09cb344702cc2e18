"""What CPython really allocates, measured with tracemalloc (test helper)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any


def _make(make: Callable[[], Any]) -> Any:
    return make()  # the blocks traced() counts are the ones allocated under this line


_MAKE_LINE = _make.__code__.co_firstlineno + 1


def traced(make: Callable[[], Any]) -> tuple[int, Any]:
    """(bytes CPython allocated for ``make()`` and still holds, the object made):
    the live tracemalloc blocks whose traceback goes through ``_make``."""
    gc.collect()
    tracemalloc.start(100)
    try:
        obj = _make(make)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    size = sum(
        trace.size
        for trace in snapshot.traces
        if any(f.filename == __file__ and f.lineno == _MAKE_LINE for f in trace.traceback)
    )
    return size, obj
