"""Record memory over time while a script runs (like `mprof run`), or of a running PID.

``memtrim record script.py [args]`` runs the script as ``python script.py``
would, sampling its memory every ``--interval`` seconds from a native thread,
with the exact heap level and the phases the script marks with
``memtrim.phase()``. ``memtrim record --pid PID`` watches a running process
until it ends (or Ctrl-C). The recording goes to ``-o FILE`` or to
``memtrim_<date>_<time>.mtrec`` here; ``memtrim plot`` draws it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from memtrim.analysis import recording
from memtrim.analysis.timeline import Timeline, peak_of, to_mib
from memtrim.api.timeline import DEFAULT_INTERVAL, Track, check_interval, record_process
from memtrim.commands import _output, _script
from memtrim.commands.errors import CommandError


def _interval(text: str) -> float:
    try:
        return check_interval(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid interval {text!r}: give a number of seconds from 0.001 to 86400"
        ) from None


def _pid(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"invalid PID {text!r}: give a positive whole number")
    return int(text)


def default_output(now: float | None = None) -> str:
    """``memtrim_YYYYmmdd_HHMMSS.mtrec`` in the current directory."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now))
    return f"memtrim_{stamp}{recording.SUFFIX}"


class RecordCommand:
    """Record memory over time of a script or a running process (like mprof run/attach)."""

    name = "record"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-o", "--output", metavar="FILE", help="where to write the recording")
        parser.add_argument(
            "--interval",
            type=_interval,
            default=DEFAULT_INTERVAL,
            metavar="S",
            help=f"seconds between samples (default {DEFAULT_INTERVAL})",
        )
        parser.add_argument(
            "-C",
            "--include-children",
            action="store_true",
            help="add the memory of child processes, read at the same instants",
        )
        parser.add_argument(
            "-M",
            "--multiprocess",
            action="store_true",
            help="record each child process as its own series",
        )
        parser.add_argument(
            "--no-heap",
            action="store_true",
            help="leave out the exact heap level (no allocator hooks: no slowdown)",
        )
        parser.add_argument("--pid", type=_pid, help="watch this running process instead")
        parser.add_argument("-q", "--quiet", action="store_true", help="say nothing when done")
        parser.add_argument("script", nargs="?", help="the Python script to run")
        parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")

    def run(self, args: argparse.Namespace) -> int:
        if (args.pid is None) == (args.script is None):
            raise CommandError("give a script to run or --pid PID (one of them)")
        output = args.output or default_output()
        _output.check_writable(output)
        if args.pid is not None:
            return self._record_pid(args, output)
        return self._record_script(args, output)

    def _record_pid(self, args: argparse.Namespace, output: str) -> int:
        try:
            timeline = record_process(
                args.pid,
                interval=args.interval,
                include_children=args.include_children,
                multiprocess=args.multiprocess,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self._save(timeline, output, args.quiet)
        return 0

    def _record_script(self, args: argparse.Namespace, output: str) -> int:
        script = _script.load_script(args.script)
        root = Track(
            os.path.basename(args.script),
            interval=args.interval,
            include_children=args.include_children or args.multiprocess,
            heap=not args.no_heap,
        )
        error: BaseException | None = None
        with _script.as_main(script, args.args) as module, root:
            try:
                _script.run(script, module)
            except BaseException as exc:
                error = exc
        timeline = root.timeline(
            command=[args.script, *args.args],
            exit_code=_exit_code(error),
            multiprocess=args.multiprocess,
            include_children=args.include_children,
        )
        self._save(timeline, output, args.quiet)
        return _script.exit_like_python(error)

    def _save(self, timeline: Timeline, output: str, quiet: bool) -> None:
        _output.write_atomic(output, recording.dumps(timeline))
        if not quiet:
            peak = peak_of(timeline.samples, "rss")
            figure = timeline.peak_rss or (peak.value if peak else None)
            said = "" if figure is None else f", peak RSS {to_mib(figure):.1f} MiB"
            sys.stderr.write(
                f"memtrim: {len(timeline.samples)} samples{said} recorded to {output}\n"
            )
            sys.stderr.flush()


def _exit_code(error: BaseException | None) -> int:
    """The status ``python script.py`` would end with."""
    if error is None:
        return 0
    if isinstance(error, SystemExit):
        code = error.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    if isinstance(error, KeyboardInterrupt):
        return 130
    return 1


COMMAND = RecordCommand()
