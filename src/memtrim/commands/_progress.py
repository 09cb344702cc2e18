"""Say on stderr what memtrim is doing once a step takes more than about a second.

After a big program ends, building its capture, writing it and rendering the
reports can take seconds; silence then looks like a hang. :class:`Steps`
shows the current step with rich's status spinner on stderr, only when stderr
is a terminal and only after the work has gone on for :data:`DELAY` seconds
(quick runs print nothing more than before)::

    with Steps() as steps:
        steps("building the capture")
        ...
        steps("writing report.html")
"""

from __future__ import annotations

import contextlib
import sys
import threading
from types import TracebackType
from typing import IO, Any

DELAY = 1.0  # seconds of work before anything is shown


class Steps:
    """A callable naming the current step; a spinner after :data:`DELAY` s (TTY only)."""

    def __init__(self, stream: IO[str] | None = None, delay: float = DELAY) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._delay = delay
        self._step = ""
        self._status: Any = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False
        try:
            self._tty = bool(self._stream.isatty())
        except (AttributeError, ValueError, OSError):  # a closed or odd stream
            self._tty = False

    def __enter__(self) -> Steps:
        if self._tty:
            self._timer = threading.Timer(self._delay, self._show)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __call__(self, step: str) -> None:
        with self._lock:
            self._step = step
            if self._status is not None:
                self._status.update(self._text())

    def _text(self) -> str:
        return f"memtrim: {self._step}…"

    def _show(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                from rich.console import Console

                console = Console(file=self._stream, stderr=self._stream is sys.stderr)
                self._status = console.status(self._text(), spinner="dots")
                self._status.start()
            except Exception:  # never let the display fail the run
                self._status = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            if self._status is not None:
                with contextlib.suppress(Exception):
                    self._status.stop()
                self._status = None
