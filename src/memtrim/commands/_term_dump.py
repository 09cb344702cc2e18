"""The end of a run whose SIGTERM came in a C call that held the GIL.

No Python code could run in the program then, so the engine's deadline thread
dumped the recording and exec'ed this in the process (the same pid: the
program's parent still waits for it; see term.c). Here the dump becomes the
capture and the reports the run would have written, with the summary on
memtrim's stream; then the process dies of SIGTERM, as the program would have
without memtrim. Every signal is blocked until then (the deadline thread's
mask), so a second SIGTERM cannot cut the writing short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Any, TextIO

# the most the writing may take before the process dies anyway
TIME_LIMIT = 120.0


def main(path: str) -> None:
    """Write the capture from the dump at ``path`` (then removed), and die of SIGTERM."""
    timer = threading.Timer(TIME_LIMIT, _die)
    timer.daemon = True
    timer.start()
    err: TextIO | None = None
    try:
        from memtrim.run import termdump

        with open(path, "rb") as file:
            dump = termdump.read(file.read())
        err = _stream(dump.context.get("stderr_fd", -1))
        _write(dump, err)
    except Exception as exc:  # one line, never a traceback
        if err is None:
            err = _stream(2)
        _say(err, f"memtrim: the capture at SIGTERM could not be written: {exc}\n")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        _die()


def _write(dump: Any, err: TextIO | None) -> None:
    from memtrim.commands.report import write_outputs
    from memtrim.commands.run import entry_test, tell
    from memtrim.run import termdump
    from memtrim.run.session import OWN_FILES

    ctx = dump.context
    entry = ctx.get("entry")
    capture = termdump.capture_of(dump, OWN_FILES, entry_test(entry) if entry else None)
    written: list[tuple[str, int]] = []
    output = ctx["output"]
    write_outputs(
        capture,
        output,
        ctx.get("html"),
        ctx.get("json"),
        force=True,  # the capture kept while it ran is the run's own
        written=written,
        json_sites=ctx.get("json_sites", 100),
    )
    if err is not None and not ctx.get("quiet"):
        shown = {output: ctx.get("shown") or output}
        shown.update({path: name for path, name in ctx.get("typed") or () if path})
        tell(capture, err, ctx.get("cwd") or os.getcwd(), written, shown)


def _stream(fd: Any) -> TextIO | None:
    if not isinstance(fd, int) or fd < 0:
        return None
    try:
        return open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    except OSError:
        return None


def _say(err: TextIO | None, text: str) -> None:
    if err is not None:
        with contextlib.suppress(OSError, ValueError):
            err.write(text)
            err.flush()


def _die() -> None:
    """End the process of SIGTERM's default action, as the program would have."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    os._exit(128 + signal.SIGTERM)  # not reached
