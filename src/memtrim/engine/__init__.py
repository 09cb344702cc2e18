"""The native engine: allocator hooks, the line tracer, and their Python wrappers.

Nothing above this layer imports ``_engine`` directly; it goes through
:mod:`memtrim.engine.hooks` (the allocator hooks, held through handles),
:mod:`memtrim.engine.tracer` (the line tracer's tables) and
:mod:`memtrim.engine.calltree` (the call tree `memtrim run` records, one at a time).
``memtrim.engine._testing`` holds the test suite's native helpers.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Iterator
from types import ModuleType


class EngineMissingError(ImportError):
    """The C extension was not compiled (memtrim was not installed with pip)."""


def load(extension: str = "_engine") -> ModuleType:
    """Return a compiled extension of the engine, or raise a clear error."""
    try:
        return importlib.import_module(f"memtrim.engine.{extension}")
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise EngineMissingError(
            f"memtrim's native {extension.lstrip('_')} module was not compiled; install "
            "memtrim with `pip install .` (it needs a C compiler and the Python headers)"
        ) from exc


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The garbage collector off for a block that makes many objects of memtrim's:
    collections they would trigger traverse the whole of the program's heap."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
