"""Profile a whole program: what was live at the peak, what leaked, who allocated.

memtrim run [options] script.py [args] | -m module [args] | -c code [args]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import memtrim
from memtrim.commands import _native, _output, _script
from memtrim.commands._advice import add_advise_options, check_advise_options, print_advice
from memtrim.commands._progress import Steps
from memtrim.commands.errors import CommandError
from memtrim.commands.report import add_json_sites, describe_written, write_outputs
from memtrim.engine import deadline
from memtrim.model import units
from memtrim.run.capture import Capture
from memtrim.run.lifecycle import ProgramRun, exit_status
from memtrim.run.session import DEFAULT_INTERVAL, DEFAULT_SAMPLE_BYTES, ProgramProfiler


def parse_size(text: str) -> int:
    """``512M``, ``2GiB``, ``1.5g``, ``1000000`` -> bytes (binary units)."""
    try:
        return units.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: give a whole number >= 0")
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
        _output.add_force(parser, "overwrite the capture and reports")
        parser.add_argument("--exact", action="store_true", help="charge every block to its stack")
        parser.add_argument(
            "--native",
            action="store_true",
            help="put the C functions that allocated native memory below their Python line in "
            "the sampled stacks (not with --exact or --python-only)",
        )
        _native.add_python_only(parser)
        parser.add_argument(
            "--sample-bytes",
            type=parse_size,
            default=DEFAULT_SAMPLE_BYTES,
            metavar="SIZE",
            help="default mode: sample one stack per SIZE allocated on average (default 256K)",
        )
        parser.add_argument(
            "--seed",
            type=_seed,
            metavar="N",
            help="default mode: the seed of the stack sampling (the capture records the one "
            "used; the same seed samples the same allocations again)",
        )
        add_advise_options(
            parser,
            "say what to change to use less memory, with the bytes each change saves "
            "(measured on the program's own data, near its peak and at the end)",
        )
        parser.add_argument("--html", metavar="FILE", help="also write the HTML report")
        parser.add_argument("--json", metavar="FILE", help="also write the JSON report")
        add_json_sites(parser)
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
        _native.apply_python_only(args)
        program = args.program
        words = [program.target, *program.args] if program else []
        _output.check_force_flag(args, self.name, words)
        if program is None:
            raise CommandError("give a script, -m module or -c code to run")
        if args.native and (args.exact or args.python_only):
            raise CommandError(
                "--native adds C frames to the sampled stacks: "
                f"not with {'--exact' if args.exact else '--python-only'}"
            )
        check_advise_options(args)
        script = _script.check_program(program)
        output = args.output or _default_output(program)
        for path in (output, args.html, args.json):
            if path:
                _output.refuse_existing(path, args.force)
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
    """The command line's side of one profiled run: where its files go, what it says.

    Both are fixed before the program starts, so that nothing the program does
    changes them: the files are named by absolute paths (a program that
    ``chdir``s or removes its working directory), and memtrim speaks on its own
    copy of the standard error descriptor (a program that closes ``sys.stderr``
    or sets it to ``None``).
    """

    def __init__(self, args: argparse.Namespace, program: Any, script: Any, output: str) -> None:
        self.args = args
        self.program = program
        self.script = script
        self.shown = output  # as the user typed it, or chose it: relative to where they are
        self.output = os.path.abspath(output)
        self.html = args.html and os.path.abspath(args.html)
        self.json = args.json and os.path.abspath(args.json)
        self.typed = [(self.html, args.html), (self.json, args.json)]
        self.cwd = os.getcwd()
        self.err = _own_stderr()
        self.write_failed = False
        self.status = 0  # the program's exit status, as python would end it
        self.top_pid = os.getpid()  # (forked children save too)
        self.entry = _entry_spec(program, script)
        profiler = ProgramProfiler(
            exact=args.exact,
            sample_bytes=args.sample_bytes,
            interval=args.interval,
            meta={"command": program.label, **({"follow_fork": True} if args.follow_fork else {})},
            is_entry=entry_test(self.entry),
            root=_root_of(program),
            seed=args.seed,
            native_frames=args.native,
            observer=_advisor(args),
            keep=self._keep,
        )
        if sys.executable:  # (an embedded Python may have none to exec)
            profiler.dump_context = self._dump_context
        self.kept = False  # a capture was written while the program ran
        self.steps = Steps(self.err if self.err is not None else io.StringIO())
        profiler.progress = self.steps
        self.run_ = ProgramRun(
            profiler,
            self._save,
            limit=args.limit,
            limit_interval=min(args.interval, 0.05),
            follow_fork=args.follow_fork,
            on_fork=self._in_forked_child,
            messages=self.err,
            until_exit=True,
        )

    def run(self) -> int:
        """Run the program; its profile is written when the interpreter ends.

        The program's end is the interpreter's: after its non-daemon threads
        and its ``atexit`` handlers (the run's handler, registered as the
        program starts, runs after those); then :meth:`_after_finish`.
        """
        error: BaseException | None = None
        atexit.register(self._after_finish)  # before the run's: runs after it
        if self.run_.profiler.dump_context is not None:
            self._prepare_dump()
        try:
            with self.run_:
                _script.run_program(self.program, self.script, self.run_.recording)
        except OSError as exc:
            if not self.run_.profiler.ever_started:  # the --limit watchdog could not start
                raise CommandError(str(exc)) from None
            error = exc
        except BaseException as exc:
            error = exc
        self.status = exit_status(error)
        return _script.exit_like_python(error)

    def _prepare_dump(self) -> None:
        """A SIGTERM in a C call that holds the GIL: the engine dumps the
        recording beside the capture and execs this memtrim on it, which
        writes the capture and reports and dies of the signal
        (commands/_term_dump.py)."""
        dump = f"{self.output}.sigterm-{os.getpid()}"
        package = os.path.dirname(os.path.dirname(os.path.abspath(memtrim.__file__)))
        code = (
            f"import sys; sys.path.insert(0, {package!r}); "
            "from memtrim.commands._term_dump import main; main(sys.argv[1])"
        )
        fd = self.err.fileno() if self.err is not None else -1
        deadline.prepare(dump, [os.path.abspath(sys.executable), "-c", code, dump], fd)

    def _dump_context(self) -> dict[str, Any]:
        """The command's part of the SIGTERM dump's context: where it writes, what it says."""
        return {
            "entry": self.entry,
            "output": self.output,
            "shown": self.shown,
            "html": self.html,
            "json": self.json,
            "typed": self.typed,
            "json_sites": self.args.json_sites,
            "quiet": bool(self.args.quiet),
            "cwd": self.cwd,
            "stderr_fd": self.err.fileno() if self.err is not None else -1,
            "main_ident": threading.main_thread().ident,
        }

    def _after_finish(self) -> None:
        """Last: close memtrim's stream; a profile that could not be written
        turns a successful run's status into 2."""
        failed = self.write_failed and self.status == 0 and self.run_.outcome.exit["code"] == 0
        self._close_err()
        if failed and os.getpid() == self.run_.owner:
            _flush(sys.stdout, sys.stderr)
            os._exit(2)  # the status is the interpreter's to give by now: end here

    def _keep(self, capture: Capture) -> None:
        """While the program runs: the capture so far, in place of the final one
        (which replaces it), so that a killed program leaves its profile."""
        from memtrim.run import capture as capture_file

        _output.write_atomic(self.output, capture_file.dumps(capture), force=True)
        self.kept = True

    def _save(self, capture: Capture) -> None:
        written: list[tuple[str, int]] = []
        if self.args.follow_fork and os.getpid() == self.top_pid:
            self.steps("adding up the processes' profiles")
            from memtrim.run import processes

            combined = processes.gather(self.output, capture)
            if combined is not None:
                capture.meta["processes"] = combined
        self.steps("writing the capture and reports")
        try:
            write_outputs(
                capture,
                self.output,
                self.html,
                self.json,
                force=self.args.force or self.kept,  # the capture kept while it ran is ours
                written=written,
                json_sites=self.args.json_sites,
            )
        except CommandError as exc:  # a disk filled up, a directory went away
            self.write_failed = True
            self._say(f"memtrim: {exc}\n")
        finally:
            self.steps.close()  # before anything else is written on stderr
        if self.args.quiet or self.err is None:
            return
        # The program's streams are flushed first, so that its output comes
        # before the summary, unless it ended the way that loses them
        # (os._exit, a signal): then they stay unflushed, as without memtrim.
        if self.run_.outcome.exit["kind"] not in ("os._exit", "signal"):
            _flush(sys.stdout, sys.stderr)
        shown = {self.output: self.shown}
        shown.update({path: name for path, name in self.typed if path})
        tell(capture, self.err, self.cwd, written, shown, advise=self.args.advise)

    def _say(self, text: str) -> None:
        if self.err is not None:
            with contextlib.suppress(OSError, ValueError):
                self.err.write(text)
                self.err.flush()

    def _close_err(self) -> None:
        if self.err is not None:
            with contextlib.suppress(OSError, ValueError):
                self.err.close()
            self.err = None

    def _in_forked_child(self, pid: int) -> Callable[[Capture], None]:
        base, ext = os.path.splitext(self.output)
        self.output = f"{base}.{pid}{ext}"
        self.html = self.json = None
        self.args.quiet = True
        return self._save


def tell(
    capture: Capture,
    err: TextIO,
    cwd: str,
    written: list[tuple[str, int]],
    shown: dict[str, str],
    advise: bool = False,
) -> None:
    """The summary on memtrim's stream, then the files written (``shown``: the
    name the user gave each path; the first is the capture's)."""
    from memtrim.run.render.summary import render_summary

    with contextlib.suppress(OSError, ValueError):
        render_summary(capture, err, cwd=cwd)
        if advise:
            with contextlib.suppress(CommandError):
                print_advice(capture, err, cwd)
        if written:  # each file by the name the user gave it, with its size
            err.write(describe_written(written, shown) + "\n")
        output, name = next(iter(shown.items()))
        if any(path == output for path, _ in written):
            err.write(f"see: memtrim report {name} --html report.html\n")
        err.flush()


def _advisor(args: argparse.Namespace) -> Any:
    if not args.advise:
        return None
    from memtrim.advice.running import RunAdvisor
    from memtrim.model.advice import DEFAULT_THRESHOLD

    threshold = DEFAULT_THRESHOLD if args.advise_threshold is None else args.advise_threshold
    return RunAdvisor(threshold)


def _own_stderr() -> TextIO | None:
    """memtrim's own stream on the standard error descriptor, whatever the program
    does with ``sys.stderr`` (``None`` if there is no descriptor 2)."""
    try:
        fd = os.dup(2)
    except OSError:
        return None
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    return open(fd, "w", encoding=encoding, errors="backslashreplace", closefd=True)


def _flush(*streams: Any) -> None:
    """Flush what the program left in its streams, if they are still streams."""
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.flush()


def _root_of(program: _script.Program) -> str:
    """Where the program's paths are told from: a script's directory, else here."""
    if program.kind == "script":
        return os.path.dirname(os.path.abspath(program.target))
    return os.getcwd()


def _entry_spec(program: Any, script: Any) -> dict[str, Any]:
    """Which code, called by memtrim's runner, is the program's first frame (as data)."""
    if program.kind == "module":
        return {"module": True}
    return {"filename": script.code.co_filename, "qualname": script.code.co_qualname}


def entry_test(spec: dict[str, Any]) -> Any:
    """The test of :func:`_entry_spec`'s data."""
    if spec.get("module"):
        return lambda filename, qualname: "runpy" in filename
    wanted = (spec["filename"], spec["qualname"])
    return lambda filename, qualname: (filename, qualname) == wanted


COMMAND = RunCommand()
