"""The lifecycle of one profiled program: its capture survives every way it can end.

:class:`ProgramRun` is what ``memtrim run`` does around a program, as a library,
so that the command line, a pytest plugin and a notebook share it::

    run = ProgramRun(ProgramProfiler(), save=lambda capture: capture_file.write(...))
    with run:                      # os._exit, SIGTERM, fork and --limit handled
        with run.recording():      # from the program's first instruction to its last
            main()
    run.outcome                    # how it ended, and whether the capture was saved

Whatever way the program ends (a return, an exception, ``sys.exit``,
``os._exit``, SIGTERM, the RSS limit), the capture is built once and handed to
``save`` before the process goes. Everything installed for the run (the
``os._exit`` patch, the SIGTERM handler, the watchdog) comes off when the
``with`` block ends.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import posix
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TextIO

from memtrim.engine import calltree, deadline, no_gc, watchdog
from memtrim.run.capture import Capture
from memtrim.run.session import ProgramProfiler

Save = Callable[[Capture], None]

# Seconds a SIGTERM may wait for memtrim's Python side (the main thread's
# handler, or the watcher that writes the capture when the main thread is in a
# C call without the GIL) before the process dies of it anyway (engine/deadline).
TERM_GRACE = 1.0


class SaveError(Exception):
    """Raised by a ``save`` callback that could not write the capture (one line)."""


@dataclass
class Outcome:
    """How the profiled program ended, and what became of its capture."""

    exit: dict[str, Any] = field(default_factory=lambda: {"kind": "exit", "code": 0})
    capture: Capture | None = None
    save_failed: bool = False


def exit_status(error: BaseException | None) -> int:
    """The status ``python script.py`` ends with, as the system reports it.

    The one translator of a program's ending into an exit status: ``sys.exit``
    codes as CPython passes them (a C ``long``, out of range: -1) with the low
    8 bits the system keeps (32 on Windows); a message is status 1; Ctrl-C is
    130, as the shell reports a death by SIGINT.
    """
    if error is None:
        return 0
    if isinstance(error, SystemExit):
        code = error.code
        if code is None:
            return 0
        if isinstance(code, int):  # True is 1
            code = int(code)
            if not -(2**63) <= code < 2**63:
                code = -1
            return code & (0xFFFFFFFF if sys.platform == "win32" else 0xFF)
        return 1  # a message: printed, status 1
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 1


def exit_info(error: BaseException | None, tripped: int = 0) -> dict[str, Any]:
    """The ``exit`` record of a capture: kind, code and message of the ending.

    ``kind`` is ``exit``, ``exception``, ``oom``, ``limit`` (``tripped`` is the
    RSS that tripped the limit) or ``signal`` (``code`` is then minus the signal
    number, as :mod:`subprocess` reports it).
    """
    if error is None or isinstance(error, SystemExit):
        return {"kind": "exit", "code": exit_status(error)}
    if isinstance(error, KeyboardInterrupt):
        return {"kind": "signal", "code": -signal.SIGINT, "message": "KeyboardInterrupt"}
    if isinstance(error, MemoryError):
        kind = "limit" if tripped else "oom"
        return {"kind": kind, "code": 1, "message": str(error) or "MemoryError", "rss": tripped}
    return {"kind": "exception", "code": 1, "message": f"{type(error).__name__}: {error}"}


class ProgramRun:
    """One profiled run of a program in this process, written up whatever happens.

    ``save(capture)`` writes the capture (and reports) once the program has
    ended; it raises :class:`SaveError` if it could not. ``limit`` (bytes of
    RSS) raises ``MemoryError`` in the main thread when the process crosses it,
    and ends the program with SIGKILL, capture written, if it handles that
    error and grows on. ``follow_fork``: a forked child goes on recording into
    a capture of its own, and ``on_fork(pid)`` returns the child's ``save``;
    otherwise the child is not profiled.

    ``until_exit``: the program is not over when the block ends, but when the
    interpreter does: after it has waited for the program's non-daemon threads
    and run the program's ``atexit`` handlers. Recording (and the ``os._exit``
    patch, the SIGTERM handler, the watchdog) then goes on past the block, and
    the capture is built and saved by an ``atexit`` handler registered when
    recording starts, so that it runs after every handler of the program's.
    """

    def __init__(
        self,
        profiler: ProgramProfiler,
        save: Save,
        *,
        limit: int | None = None,
        limit_interval: float = 0.05,
        follow_fork: bool = False,
        on_fork: Callable[[int], Save] | None = None,
        messages: TextIO | None = None,
        until_exit: bool = False,
    ) -> None:
        self.profiler = profiler
        self.save = save
        self.limit = limit
        self.limit_interval = limit_interval
        self.follow_fork = follow_fork
        self.on_fork = on_fork
        self.messages = messages
        self.until_exit = until_exit
        self._error: BaseException | None = None  # how the block ended (until_exit)
        self._main: Any = None  # the program's __main__ module (until_exit)
        self._own_held = False  # the main thread runs memtrim's code (until_exit)
        self._tripped = 0  # the RSS that tripped the limit in the block (until_exit)
        self.outcome = Outcome()
        self.owner = os.getpid()
        self._done = False
        self._writing = False  # the capture is being written: a SIGTERM waits
        self._term_pending = False
        self._term_claimed = False  # this run's Python side has the SIGTERM (deadline)
        self._claiming = 0  # the thread inside _claim_term, if any
        self._armed = False  # this run armed the SIGTERM deadline
        self._old_term: Any = None
        self._real_exit: Callable[[int], Any] | None = None
        self._real_fork: Callable[[], int] | None = None
        self._active = False

    # ------------------------------------------------------------ the block

    def __enter__(self) -> ProgramRun:
        if self._active:
            raise RuntimeError("this run is already active")
        self._real_exit = os._exit
        # os._exit and posix._exit are one function under two names
        os._exit = posix._exit = self._os_exit  # type: ignore[assignment]
        self._real_fork = getattr(os, "fork", None)
        if self._real_fork is not None and sys.version_info >= (3, 12):
            os.fork = self._fork
        _fork.current = self
        self._old_term = signal.signal(signal.SIGTERM, self._on_sigterm)
        # no thread (OSError), or another run's deadline armed (RuntimeError):
        # this run's SIGTERM waits for Python, as before
        with contextlib.suppress(OSError, RuntimeError):
            deadline.arm(TERM_GRACE)
            self._armed = True
        self.profiler.on_term = self._term_in_c_call
        self._active = True
        if self.limit:
            try:
                watchdog.start(self.limit, self.limit_interval, self._on_limit_exceeded)
            except BaseException:
                self._uninstall()
                raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.until_exit and self._deferred():
            self._error = error  # the ending recorded when the interpreter ends
            # the limit's MemoryError is for the main code: it could only
            # arrive in memtrim's code or the interpreter's from now on
            self._tripped = watchdog.stop() if self.limit else 0
            return
        self._end(error)

    def _deferred(self) -> bool:
        """Is the ending left to the ``atexit`` handler (see ``until_exit``)?"""
        return self.profiler.ever_started and not self._done and os.getpid() == self.owner

    def _at_exit(self) -> None:
        # atexit: the program's threads have ended, its own handlers have run
        self._release_own()
        if self._active:
            if os.getpid() == self.owner:
                if self._main is not None:  # the program's, as python has it to the end
                    sys.modules["__main__"] = self._main  # (the advisor's exit walk reads it)
                self.profiler.pause()  # first: what follows is memtrim's
            self._end(self._error)

    def _end(self, error: BaseException | None) -> None:
        tripped = max(self._tripped, watchdog.stop() if self.limit else 0)
        self._disarm()  # first: CPython's handler back under memtrim's Python one
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._old_term)
        try:
            self.finish(error, tripped)
        finally:
            self._uninstall()
            self._main = None

    def _disarm(self) -> None:
        if self._armed:  # (not another run's)
            self._armed = False
            deadline.disarm()

    def _uninstall(self) -> None:
        self._disarm()
        self.profiler.on_term = None
        if self._real_exit is not None:
            os._exit = posix._exit = self._real_exit  # type: ignore[assignment]
        if self._real_fork is not None and os.fork == self._fork:
            os.fork = self._real_fork
        if _fork.current is self:
            _fork.current = None
        self._active = False

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Record for the block: enter it right before the program's first instruction.

        With ``until_exit``, recording goes on after the block, until the
        interpreter ends (the ``atexit`` handler registered here).
        """
        self.profiler.start()
        if self.until_exit:
            calltree.own_enter()  # memtrim's, not the program's (no context
            try:  # manager: making one would be counted)
                # registered now, after memtrim's own set-up and before the
                # program's first handler: atexit runs it after the program's
                atexit.register(self._at_exit)
                # the program's __main__ lives until the interpreter ends, as
                # under python, whatever the runner does with sys.modules
                self._main = sys.modules.get("__main__")
            finally:
                calltree.own_exit()
        try:
            yield
        finally:
            if os.getpid() == self.owner:
                if self.until_exit:
                    self._hold_own()
                else:
                    self.profiler.pause()

    def _hold_own(self) -> None:
        # From the end of the block to the interpreter's shutdown, the main
        # thread runs memtrim's code (the traceback, the command's return):
        # its new blocks are not the program's. The program's other threads
        # are still recorded; the main thread is again from the moment the
        # interpreter starts to end (threading's exit callbacks, run before
        # it waits for the threads and before the atexit handlers).
        calltree.own_enter()
        self._own_held = True
        with contextlib.suppress(AttributeError, RuntimeError):  # 3.9+; not while ending
            threading._register_atexit(self._release_own)  # type: ignore[attr-defined]

    def _release_own(self) -> None:
        if self._own_held:
            self._own_held = False
            calltree.own_exit()

    # -------------------------------------------------------------- endings

    def finish(
        self,
        error: BaseException | None,
        tripped: int = 0,
        exit: dict[str, Any] | None = None,
    ) -> None:
        """Build and save the capture (once, and only in the recorded process)."""
        if self._done or os.getpid() != self.owner:
            return
        if not self.profiler.ever_started:  # the program never began: nothing to save
            self._done = True
            self.outcome.exit = exit or exit_info(error, tripped)
            return
        if not self._claim_term():  # memtrim's watcher writes the SIGTERM capture
            _wait_for_the_end()
        self.profiler.pause()  # first: what follows is memtrim's, not the program's
        if self.limit:
            tripped = max(tripped, watchdog.stop())  # memtrim's growth is not the program's
        # A SIGTERM now (a multiprocessing pool terminating its workers) would
        # cut the capture short: hold it until the files are written. The
        # mask keeps the signal from arriving; `_writing` makes the handler of
        # one that arrived already wait (see _on_sigterm).
        self._done = self._writing = True
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            self.outcome.exit = exit or exit_info(error, tripped)
            self.profiler.meta["exit"] = self.outcome.exit
            with no_gc():
                capture = self.outcome.capture = self.profiler.stop()
                try:
                    self.save(capture)
                except SaveError as exc:  # a disk filled up, a directory went away
                    self.outcome.save_failed = True
                    self._say(f"memtrim: {exc}\n")
        finally:
            self._writing = False
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if self._term_pending:
            self._die_of_sigterm()

    def _fork(self) -> int:
        # CPython 3.12+ warns at os.fork() when the process has more than one
        # thread; memtrim's own (the timeline's sampler, the watcher) would
        # make a single-threaded program's fork warn where python does not.
        # The program's own threads still make it warn, as without memtrim.
        assert self._real_fork is not None
        if threading.active_count() > 1:
            return self._real_fork()
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore",
                message=r"This process \(pid=\d+\) is multi-threaded",
                category=DeprecationWarning,
            )
            return self._real_fork()

    def _os_exit(self, status: int) -> None:
        # os._exit skips atexit and finally blocks: write the capture first.
        try:
            self.finish(None, exit={"kind": "os._exit", "code": status})
        finally:
            assert self._real_exit is not None
            self._real_exit(status)

    def _on_limit_exceeded(self, rss: int) -> None:
        # The program handled the MemoryError of the limit and went on growing:
        # write what was live and end it as the kernel's OOM killer would.
        info = {
            "kind": "limit",
            "code": -signal.SIGKILL,
            "message": f"resident memory grew on past the --limit ({rss} bytes)",
            "rss": rss,
        }
        try:
            self.finish(None, exit=info)
        finally:
            self._say(
                "memtrim: the program went on past the --limit after its MemoryError: "
                "stopped (SIGKILL)\n"
            )
            os.kill(os.getpid(), signal.SIGKILL)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Like plain Python, die of the signal at once (no unwinding, no
        # finally blocks); only write the profile first.
        if self._writing:
            self._term_pending = True  # finish() dies of it once the files are written
            return
        if not self._claim_term():  # memtrim's watcher thread has it (_term_in_c_call)
            _wait_for_the_end()
        info = {"kind": "signal", "code": -signal.SIGTERM, "message": "SIGTERM"}
        try:
            self.finish(None, exit=info)
        finally:
            self._die_of_sigterm()

    def _claim_term(self) -> bool:
        """Is this thread the one to write the capture (see engine/deadline)?

        A SIGTERM's handler may run inside this very call (between the claim
        in C and the assignment): the thread that is claiming counts as the
        claimant, or the handler would wait for a writer that is itself.
        """
        me = threading.get_ident()
        if self._term_claimed or self._claiming == me:
            return True
        self._claiming = me
        try:
            self._term_claimed = deadline.claim()
        finally:
            self._claiming = 0
        return self._term_claimed

    def _term_in_c_call(self) -> None:
        # The disk keeper's thread, GIL held, the signal claimed: a SIGTERM came
        # while the main thread was in a C call that released the GIL (its
        # handler could not run). The keeper has written the capture of this
        # moment; end the process as the signal would have.
        deadline.die()

    def _say(self, text: str) -> None:
        """A line of memtrim's, on ``messages`` (default: the program's stderr)."""
        stream = self.messages if self.messages is not None else sys.stderr
        with contextlib.suppress(Exception):  # closed, None, or no descriptor
            stream.write(text)
            stream.flush()

    def _die_of_sigterm(self) -> None:
        # no flush of the program's streams: dying of SIGTERM loses them
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def _after_fork_in_child(self) -> None:
        self._term_claimed, self._claiming = False, 0  # the deadline is the child's own
        if self.follow_fork and self.on_fork is not None:
            self.owner = os.getpid()
            self.save = self.on_fork(self.owner)
            self.profiler.after_fork_in_child()
            deadline.after_fork(rearm=True)
        else:
            self.profiler.stop_in_forked_child()  # the child is not profiled
            self.owner = -1
            deadline.after_fork(rearm=False)
            self._armed = False
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, self._old_term)


def _wait_for_the_end() -> None:
    """Another thread of memtrim's writes the capture and ends the process:
    the program must not go on meanwhile (the GIL released while waiting)."""
    while True:
        threading.Event().wait(3600)


class _ForkDispatch:
    """One ``os.register_at_fork`` for the process (registrations cannot be
    undone), passed on to the run active at the time of the fork, if any."""

    def __init__(self) -> None:
        self.current: ProgramRun | None = None
        os.register_at_fork(after_in_child=self._after_in_child)

    def _after_in_child(self) -> None:
        if self.current is not None:
            self.current._after_fork_in_child()


_fork = _ForkDispatch()
