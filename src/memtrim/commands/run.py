"""Profile a whole program: what was live at the peak, what leaked, who allocated.

memtrim run [options] script.py [args] | -m module [args] | -c code [args]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import posix
import re
import signal
import sys
from collections.abc import Iterator
from typing import Any

from memtrim.commands import _output, _script
from memtrim.commands.errors import CommandError
from memtrim.commands.report import write_outputs
from memtrim.engine import load
from memtrim.run.session import DEFAULT_INTERVAL, DEFAULT_SAMPLE_BYTES, ProgramProfiler, no_gc

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """``512M``, ``2GiB``, ``1.5g``, ``1000000`` -> bytes (binary units)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 512M or 2G")
    number, unit = match.groups()
    value = int(float(number) * _UNITS[(unit or "").lower()[:1]])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be positive")
    return value


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


class RunCommand:
    """Profile a whole program: the peak, leaks and allocators, line by line and stack by stack."""

    name = "run"
    runs_program = True

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.usage = "memtrim run [options] (script.py | -m module | -c code) [args...]"
        parser.add_argument("-o", "--output", metavar="FILE", help="the capture file to write")
        parser.add_argument("-f", "--force", action="store_true", help="overwrite the capture")
        parser.add_argument("--exact", action="store_true", help="charge every block to its stack")
        parser.add_argument(
            "--sample-bytes",
            type=parse_size,
            default=DEFAULT_SAMPLE_BYTES,
            metavar="SIZE",
            help="default mode: sample one stack per SIZE allocated on average (default 256K)",
        )
        parser.add_argument("--html", metavar="FILE", help="also write the HTML report")
        parser.add_argument("--json", metavar="FILE", help="also write the JSON report")
        parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
        parser.add_argument(
            "--follow-fork", action="store_true", help="profile forked children too (own captures)"
        )
        parser.add_argument(
            "--limit", type=parse_size, metavar="SIZE", help="stop the program at this RSS"
        )
        parser.add_argument(
            "--interval",
            type=_positive(float),
            default=DEFAULT_INTERVAL,
            metavar="S",
            help=f"timeline sampling period (default {DEFAULT_INTERVAL} s)",
        )

    def run(self, args: argparse.Namespace) -> int:
        program = args.program
        if program is None:
            raise CommandError("give a script, -m module or -c code to run")
        script = _script.check_program(program)
        output = args.output or _default_output(program)
        if os.path.exists(output) and not args.force:
            raise CommandError(
                f"{output} exists: use -f to overwrite it or -o to name another file"
            )
        for path in (output, args.html, args.json):
            if path:
                _output.check_writable(path)
        return _Session(args, program, script, output).run()


def _default_output(program: _script.Program) -> str:
    stem = (
        os.path.splitext(os.path.basename(program.target))[0]
        if program.kind == "script"
        else (program.target if program.kind == "module" else "code")
    )
    return f"memtrim-{re.sub(r'[^A-Za-z0-9_.-]', '_', stem)}.{os.getpid()}.memtrim"


class _Session:
    """One profiled run: start, run the program, and write up whatever happens."""

    def __init__(self, args: argparse.Namespace, program: Any, script: Any, output: str) -> None:
        self.args = args
        self.program = program
        self.script = script
        self.output = output
        self.owner = os.getpid()
        self.written = False
        self.write_failed = False
        self.writing = False  # the capture is being written: a SIGTERM waits
        self.term_pending = False
        self.profiler = ProgramProfiler(
            exact=args.exact,
            sample_bytes=args.sample_bytes,
            interval=args.interval,
            meta={"command": program.label},
            is_entry=_entry_test(program, script),
        )

    def run(self) -> int:
        engine = load()
        real_exit = os._exit
        # os._exit and posix._exit are one function under two names
        os._exit = posix._exit = self._os_exit  # type: ignore[assignment]
        os.register_at_fork(after_in_child=self._after_fork)
        self.old_term = signal.signal(signal.SIGTERM, self._on_sigterm)
        error: BaseException | None = None
        self.real_exit = real_exit
        if self.args.limit:
            try:
                engine.watchdog_start(
                    self.args.limit, min(self.args.interval, 0.05), self._on_limit_exceeded
                )
            except OSError as exc:
                raise CommandError(str(exc)) from None
        try:
            _script.run_program(self.program, self.script, self._recording)
        except BaseException as exc:
            error = exc
        finally:
            tripped = engine.watchdog_stop() if self.args.limit else 0
            signal.signal(signal.SIGTERM, self.old_term)
        self._finish(error, tripped)
        os._exit = posix._exit = real_exit  # type: ignore[assignment]
        if self.write_failed and _exit_info(error, tripped)["code"] == 0:
            return 2  # the program went well, its profile did not
        return _script.exit_like_python(error)

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        self.profiler.start()
        try:
            yield
        finally:
            if os.getpid() == self.owner:
                self.profiler.pause()

    def _finish(
        self,
        error: BaseException | None,
        tripped: int = 0,
        exit_info: dict[str, Any] | None = None,
    ) -> None:
        if self.written or os.getpid() != self.owner:
            return
        self.profiler.pause()  # first: what follows is memtrim's, not the program's
        if self.args.limit:
            tripped = max(tripped, load().watchdog_stop())  # memtrim's growth is not the program's
        # A SIGTERM now (a multiprocessing pool terminating its workers) would
        # cut the capture short: hold it until the files are written. The
        # mask keeps the signal from arriving; `writing` makes the handler of
        # one that arrived already wait (see _on_sigterm).
        self.written = self.writing = True
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            self.profiler.meta["exit"] = exit_info or _exit_info(error, tripped)
            with no_gc():
                capture = self.profiler.stop()
                try:
                    write_outputs(capture, self.output, self.args.html, self.args.json, force=True)
                except CommandError as exc:  # a disk filled up, a directory went away
                    self.write_failed = True
                    sys.stderr.write(f"memtrim: {exc}\n")
        finally:
            self.writing = False
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if self.term_pending:
            self._die_of_sigterm()
        if not self.args.quiet:
            from memtrim.run.render.summary import render_summary

            sys.stdout.flush()
            render_summary(capture, sys.stderr)
            sys.stderr.write(
                f"capture: {self.output}  (memtrim report {self.output} --html report.html)\n"
            )
            sys.stderr.flush()

    def _os_exit(self, status: int) -> None:
        # os._exit skips atexit and finally blocks: write the capture first.
        try:
            self._finish(None, exit_info={"kind": "os._exit", "code": status})
        finally:
            self.real_exit(status)

    def _on_limit_exceeded(self, rss: int) -> None:
        # The program handled the MemoryError of --limit and went on growing:
        # write what was live and end it as the kernel's OOM killer would.
        info = {
            "kind": "limit",
            "code": -signal.SIGKILL,
            "message": f"resident memory grew on past the --limit ({rss} bytes)",
            "rss": rss,
        }
        try:
            self._finish(None, exit_info=info)
        finally:
            sys.stderr.write(
                "memtrim: the program went on past the --limit after its MemoryError: "
                "stopped (SIGKILL)\n"
            )
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        # Like plain Python, die of the signal at once (no unwinding, no
        # finally blocks); only write the profile first.
        if self.writing:
            self.term_pending = True  # _finish dies of it once the files are written
            return
        info = {"kind": "signal", "code": -signal.SIGTERM, "message": "SIGTERM"}
        try:
            self._finish(None, exit_info=info)
        finally:
            self._die_of_sigterm()

    def _die_of_sigterm(self) -> None:
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def _after_fork(self) -> None:
        if self.args.follow_fork:
            self.owner = os.getpid()
            base, ext = os.path.splitext(self.output)
            self.output = f"{base}.{self.owner}{ext}"
            self.args.html = self.args.json = None
            self.args.quiet = True
            self.profiler.after_fork_in_child()
        else:
            load().rec_stop()  # the child is not profiled
            self.owner = -1
            if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
                signal.signal(signal.SIGTERM, self.old_term)


def _entry_test(program: Any, script: Any) -> Any:
    """Which code, called by memtrim's runner, is the program's first frame."""
    if program.kind == "module":
        return lambda filename, qualname: "runpy" in filename
    return lambda filename, qualname: (
        filename == script.code.co_filename and qualname == script.code.co_qualname
    )


def _exit_info(error: BaseException | None, tripped: int) -> dict[str, Any]:
    if error is None:
        return {"kind": "exit", "code": 0}
    if isinstance(error, SystemExit):
        code = error.code
        return {
            "kind": "exit",
            "code": code if isinstance(code, int) else (0 if code is None else 1),
        }
    if isinstance(error, KeyboardInterrupt):
        return {"kind": "signal", "code": -signal.SIGINT, "message": "KeyboardInterrupt"}
    if isinstance(error, MemoryError):
        kind = "limit" if tripped else "oom"
        return {"kind": kind, "code": 1, "message": str(error) or "MemoryError", "rss": tripped}
    return {"kind": "exception", "code": 1, "message": f"{type(error).__name__}: {error}"}


COMMAND = RunCommand()
