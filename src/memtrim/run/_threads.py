"""Names of the threads a recording saw, even those that ended before it did.

This module's frames run inside the program's threads (a hook on
``threading.Thread``); the capture builder leaves them, and what they call,
out of the program's figures (see ``OwnFiles`` in ``run.build``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any


class ThreadNames:
    """The names of the threads seen while recording, in the order they started.

    The engine keeps one root per thread, in the order threads first allocated;
    idents are reused once a thread ends, so a name is looked up as "the n-th
    thread with this ident": those alive when recording began, then those
    started since (recorded by a hook on ``threading.Thread._set_ident``, with
    their final name taken when they end).
    """

    def __init__(self) -> None:
        self.on_change: Callable[[], None] | None = None  # a thread started or ended
        self._by_ident: dict[int, list[str]] = {}
        self._live: dict[int, threading.Thread] = {}
        self._patched: tuple[Any, Any] | None = None

    def start(self) -> None:
        self._by_ident = {}
        for thread in threading.enumerate():
            if thread.ident is not None:
                self._by_ident[thread.ident] = [thread.name]
                self._live[thread.ident] = thread
        cls = threading.Thread
        set_ident, delete = cls._set_ident, cls._delete  # type: ignore[attr-defined]
        names = self

        def _set_ident(thread: threading.Thread) -> None:
            set_ident(thread)
            names._started(thread)

        def _delete(thread: threading.Thread) -> None:
            names._ended(thread)
            delete(thread)

        self._patched = (set_ident, delete)
        cls._set_ident = _set_ident  # type: ignore[attr-defined]
        cls._delete = _delete  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.on_change = None
        if self._patched is not None:
            cls = threading.Thread
            cls._set_ident, cls._delete = self._patched  # type: ignore[attr-defined]
            self._patched = None
        for ident, thread in list(self._live.items()):
            self._ended(thread, ident)

    def _started(self, thread: threading.Thread) -> None:
        if thread.ident is not None:
            self._by_ident.setdefault(thread.ident, []).append(thread.name)
            self._live[thread.ident] = thread
            self._changed()

    def _ended(self, thread: threading.Thread, ident: int | None = None) -> None:
        ident = thread.ident if ident is None else ident
        names = self._by_ident.get(ident) if ident is not None else None
        if names and self._live.get(ident) is thread:
            names[-1] = thread.name  # renamed while it ran
            del self._live[ident]
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            with contextlib.suppress(Exception):  # never the program's problem
                self.on_change()

    def table(self) -> dict[int, list[str]]:
        """The names seen so far, by ident (a copy)."""
        return {ident: list(names) for ident, names in dict(self._by_ident).items()}

    def name(self, ident: int, n: int) -> str:
        """The name of the ``n``-th thread (from 0) seen with ``ident``."""
        names = self._by_ident.get(ident, [])
        if n < len(names):
            return names[n]
        if ident == threading.main_thread().ident:
            return "MainThread"
        return f"thread {ident}"
