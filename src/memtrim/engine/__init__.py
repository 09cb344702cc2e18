"""The native engine: allocator hooks, the line tracer, and their Python wrappers.

Nothing above this layer imports ``_engine`` directly; it goes through
:mod:`memtrim.engine.hooks` (the allocator hooks, held through handles),
:mod:`memtrim.engine.tracer` (the line tracer's tables) and
:mod:`memtrim.engine.calltree` (the call tree `memtrim run` records, one at a time).
``memtrim.engine._testing`` holds the test suite's native helpers.
"""

from __future__ import annotations

from types import ModuleType


class EngineMissingError(ImportError):
    """The C extension was not compiled (memtrim was not installed with pip)."""


def load() -> ModuleType:
    """Return the compiled ``_engine`` module, or raise a clear error."""
    try:
        from memtrim.engine import _engine
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise EngineMissingError(
            "memtrim's native engine was not compiled; install memtrim with "
            "`pip install .` (it needs a C compiler and the Python headers)"
        ) from exc
    return _engine
