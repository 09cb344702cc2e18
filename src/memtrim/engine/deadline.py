"""The SIGTERM deadline: a program dies of SIGTERM promptly, even in a long C call.

memtrim handles SIGTERM in Python (to write the capture first), and CPython
runs Python handlers only between bytecodes of the main thread: a program in a
long C call would die only when the call returns. :func:`arm` wraps the
SIGTERM handler installed at that moment (memtrim's) so that a native thread
kills the process with SIGTERM's default action ``grace`` seconds after the
signal, unless memtrim's Python side has claimed it (:func:`claim`) to write
the capture.

When no Python code can claim it (the thread holding the GIL is stuck in a C
call), :func:`prepare` lets the deadline thread write the recording as it is
to a file and exec a command in the process that turns it into the capture
(see term.c); :func:`set_context` gives what that command needs besides the
call tree.
"""

from __future__ import annotations

from memtrim.engine import load

_engine = load()


def arm(grace: float) -> None:
    """Wrap the SIGTERM handler installed now; call right after installing it."""
    _engine.term_arm(grace)


def disarm() -> None:
    """Put the wrapped handler back (unless the program set its own); safe twice."""
    _engine.term_disarm()


def claim() -> bool:
    """True for the first claim of a SIGTERM (or when not armed): that caller writes
    the capture and ends the process; False: another thread of memtrim's does."""
    return _engine.term_claim()


def waiting() -> float:
    """Seconds since a SIGTERM nobody has claimed came, or -1.0."""
    return _engine.term_waiting()


def after_fork(rearm: bool) -> None:
    """In a forked child: a deadline thread of its own (``rearm``), or none."""
    _engine.term_after_fork(rearm)


def die() -> None:
    """End the process of SIGTERM's default action (from any thread): no return."""
    _engine.term_die()


def prepare(path: str | None, argv: list[str] | None = None, fd: int = -1) -> None:
    """At the deadline, dump the recording to ``path`` and exec ``argv`` (an
    absolute executable first), keeping descriptor ``fd`` open; None: no dump."""
    _engine.term_prepare(path, argv, fd)


def set_context(blob: bytes | None, names: bool = False) -> None:
    """The bytes written before the call tree in the dump: the run's context,
    or (``names``) its threads' names, set apart as each thread starts."""
    _engine.term_context(1 if names else 0, blob)
