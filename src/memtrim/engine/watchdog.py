"""The RSS limit watchdog: a native thread that stops a program at a size.

Once the process's resident memory reaches ``limit_bytes``, the main thread
raises ``MemoryError`` at its next bytecode boundary; if the program handles
it and grows on, ``on_exceeded(rss)`` is called in the main thread (to write
the profile and end the process, as the kernel's OOM killer would).
"""

from __future__ import annotations

from collections.abc import Callable

from memtrim.engine import load

_engine = load()


def start(
    limit_bytes: int, interval: float, on_exceeded: Callable[[int], object] | None = None
) -> None:
    """Start watching; ``OSError`` where the RSS cannot be read (not Linux)."""
    _engine.watchdog_start(limit_bytes, interval, on_exceeded)


def stop() -> int:
    """Stop watching (safe to call twice); returns the RSS that tripped the limit, or 0."""
    return _engine.watchdog_stop()
