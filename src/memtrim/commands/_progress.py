"""Say on stderr what memtrim is doing once a step takes more than about a second.

After a big program ends, building its capture, writing it and rendering the
reports can take seconds; silence then looks like a hang. :class:`Steps`
shows the current step with a spinner on stderr, only when stderr is a
terminal and only after the work has gone on for :data:`DELAY` seconds (quick
runs print nothing more than before)::

    steps = Steps()          # its thread starts now: see below
    ...
    steps("building the capture")
    ...
    steps("writing report.html")
    steps.close()            # the line is cleared

The display thread is started when :class:`Steps` is made, not when the first
step is named: ``memtrim run`` names its steps while the interpreter is
ending (after the program's ``atexit`` handlers), when no thread can be
started any more, and before the program starts its start is not the
program's memory. It waits on a condition until then, costing nothing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO

from memtrim.run.ondisk import start_quiet_thread

DELAY = 1.0  # seconds of work before anything is shown (MEMTRIM_PROGRESS_DELAY)
_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def _delay() -> float:
    try:
        return max(float(os.environ.get("MEMTRIM_PROGRESS_DELAY", DELAY)), 0.0)
    except ValueError:
        return DELAY


class Steps:
    """A callable naming the current step; a spinner after :data:`DELAY` s (TTY only)."""

    def __init__(self, stream: IO[str] | None = None, delay: float | None = None) -> None:
        self._stream = sys.stderr if stream is None else stream
        self._delay = _delay() if delay is None else delay
        self._step = ""
        self._since = 0.0
        self._shown = False
        self._closed = False
        self._wake = threading.Condition()
        try:
            self._tty = bool(self._stream.isatty())
        except (AttributeError, ValueError, OSError):  # a closed or odd stream
            self._tty = False
        if self._tty:
            try:
                start_quiet_thread(self._run, ())
            except RuntimeError:  # the interpreter is ending: no display
                self._tty = False

    def __call__(self, step: str) -> None:
        """Name the current step (the first one starts the clock)."""
        with self._wake:
            if not self._step:
                self._since = time.monotonic()
            self._step = step
            if self._tty and not self._closed and time.monotonic() - self._since >= self._delay:
                self._shown = True  # a new step is shown at once, the spinner follows
                self._write(f"\r\x1b[2K{_FRAMES[0]} memtrim: {step}…")
            self._wake.notify()

    def close(self) -> None:
        """Clear the line and end the display (idempotent)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            if self._shown:
                self._write("\r\x1b[2K")
                self._shown = False

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # the stream went away: stop showing
            self._closed = True

    def _run(self) -> None:
        tick = 0
        with self._wake:
            while not self._closed:
                if not self._step:
                    self._wake.wait()
                    continue
                waited = time.monotonic() - self._since
                if waited < self._delay:
                    self._wake.wait(self._delay - waited)
                    continue
                self._shown = True
                self._write(f"\r\x1b[2K{_FRAMES[tick % len(_FRAMES)]} memtrim: {self._step}…")
                tick += 1
                self._wake.wait(0.1)
