"""Record memory over time while a script runs (like `mprof run`), or of a running PID.

``memtrim record script.py [args]`` runs the script as ``python script.py``
would, sampling its memory every ``--interval`` seconds from a native thread,
with the exact heap level and the phases the script marks with
``memtrim.phase()``. ``memtrim record --pid PID`` watches a running process
until it ends (or Ctrl-C). The recording goes to ``-o FILE`` or to
``memtrim_<date>_<time>_<pid>.mtrec`` here, never over an existing file
(unless ``--force``); ``memtrim plot`` draws it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

from memtrim.commands import _output, _script
from memtrim.commands.errors import CommandError
from memtrim.timeline import recording
from memtrim.timeline.model import Timeline, peak_of, to_mib
from memtrim.timeline.session import DEFAULT_INTERVAL, Track, check_interval, record_process


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


def default_output(now: float | None = None, pid: int | None = None) -> str:
    """``memtrim_YYYYmmdd_HHMMSS_PID.mtrec`` in the current directory: two
    recordings started in the same second by different processes differ."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now))
    return f"memtrim_{stamp}_{os.getpid() if pid is None else pid}{recording.SUFFIX}"


def write_new(path: str, data: str) -> str:
    """Write ``data`` to ``path``, or to ``path`` with ``_1``, ``_2``... before its
    suffix if that exists: never over a file. Whole or not at all (a temporary
    file linked into place). Returns the path written."""
    directory = os.path.dirname(os.path.abspath(path))
    stem, suffix = os.path.splitext(path)
    fd, tmp = tempfile.mkstemp(prefix=".memtrim-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        for number in range(10_000):
            candidate = path if number == 0 else f"{stem}_{number}{suffix}"
            try:
                os.link(tmp, candidate)  # fails if it exists, unlike a rename
            except FileExistsError:
                continue
            return candidate
        raise CommandError(f"cannot write {path}: too many files of that name")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        parser.add_argument(
            "-f", "--force", action="store_true", help="overwrite FILE if it exists"
        )
        parser.add_argument("-q", "--quiet", action="store_true", help="say nothing when done")
        parser.add_argument("script", nargs="?", help="the Python script to run")
        parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")

    def run(self, args: argparse.Namespace) -> int:
        if (args.pid is None) == (args.script is None):
            raise CommandError("give a script to run or --pid PID (one of them)")
        output = args.output or default_output()
        if args.output and os.path.exists(output) and not args.force and not os.path.isdir(output):
            raise CommandError(f"{output} exists: use --force to overwrite it")
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
        self._save(timeline, output, args)
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
        recorder = os.getpid()
        with _script.as_main(script, args.args) as module, root:
            try:
                _script.run(script, module)
            except BaseException as exc:
                error = exc
        if os.getpid() != recorder:
            # A child the script forked has run to the end of the script: only
            # the recorded process writes the recording; the child ends as it
            # would under plain python.
            return _script.exit_like_python(error)
        timeline = root.timeline(
            command=[args.script, *args.args],
            exit_code=exit_status(error),
            multiprocess=args.multiprocess,
            include_children=args.include_children,
        )
        self._save(timeline, output, args)
        return _script.exit_like_python(error)

    def _save(self, timeline: Timeline, output: str, args: argparse.Namespace) -> None:
        data = recording.dumps(timeline)
        if args.force:
            _output.write_atomic(output, data)
            written = output
        else:
            written = write_new(output, data)
        if written != output:  # it appeared while recording: said even with -q
            sys.stderr.write(f"memtrim: {output} appeared meanwhile: not overwritten\n")
        if not args.quiet or written != output:
            sys.stderr.write(f"memtrim: {summary(timeline)} recorded to {written}\n")
        sys.stderr.flush()


def summary(timeline: Timeline) -> str:
    """``N samples, peak RSS X MiB`` (``..., Y MiB with children`` when followed)."""
    peak = peak_of(timeline.samples, "rss")
    candidates = [v for v in (timeline.peak_rss, peak and peak.value) if v is not None]
    text = f"{len(timeline.samples)} samples"
    if candidates:
        text += f", peak RSS {to_mib(max(candidates)):.1f} MiB"
        total = peak_of(timeline.samples, "total")
        with_children = [v for v in (timeline.peak_total, total and total.value) if v is not None]
        if timeline.peak_total is not None and with_children:
            text += f" (own), {to_mib(max(with_children)):.1f} MiB with children"
    return text


def exit_status(error: BaseException | None) -> int:
    """The status ``python script.py`` ends with, as the system reports it."""
    if error is None:
        return 0
    if isinstance(error, SystemExit):
        code = error.code
        if code is None:
            return 0
        if isinstance(code, int):  # True is 1
            return _os_status(int(code))
        return 1  # a message: printed, status 1
    if isinstance(error, KeyboardInterrupt):
        return 130
    return 1


def _os_status(code: int) -> int:
    """What the system reports for ``exit(code)``: CPython passes it as a C
    ``long`` (out of range: -1) and the system keeps its low 8 bits
    (32 on Windows)."""
    if not -(2**63) <= code < 2**63:
        code = -1
    return code & (0xFFFFFFFF if sys.platform == "win32" else 0xFF)


COMMAND = RecordCommand()
