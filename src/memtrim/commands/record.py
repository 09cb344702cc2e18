"""Record memory over time while a script runs (like `mprof run`), or of a running PID.

``memtrim record script.py [args]`` runs the script as ``python script.py``
would, sampling its memory every ``--interval`` seconds from a native thread,
with the exact heap level and the phases the script marks with
``memtrim.phase()``. ``memtrim record --pid PID`` watches a running process
until it ends (or Ctrl-C). The recording goes to ``-o FILE`` or to
``memtrim_<date>_<time>_<pid>.mtrec`` here, never over an existing file
(unless ``--force``); ``memtrim plot`` draws it.

As ``mprof run`` does, the script gets a ``profile`` builtin: each call of a
function decorated with ``@profile`` is recorded as a phase named after the
function (its start, end, exact heap peak and increment, RSS peak), which
``memtrim plot`` draws; the line profiler's ``profile.enable_by_count()`` and
``with profile:`` are accepted and change nothing.
"""

from __future__ import annotations

import argparse
import builtins
import functools
import inspect
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from memtrim.commands import _native, _output, _script
from memtrim.commands.errors import CommandError
from memtrim.model.units import mib
from memtrim.run.lifecycle import exit_status
from memtrim.timeline import recording
from memtrim.timeline.model import Timeline, peak_of, with_true_peaks
from memtrim.timeline.session import (
    DEFAULT_INTERVAL,
    Track,
    check_interval,
    phase,
    record_process,
)


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
        _native.add_python_only(parser)
        _output.add_force(parser, "overwrite FILE if it exists")
        parser.add_argument("-q", "--quiet", action="store_true", help="say nothing when done")
        parser.add_argument("script", nargs="?", help="the Python script to run")
        parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")

    def run(self, args: argparse.Namespace) -> int:
        _native.apply_python_only(args)
        _output.check_force_flag(args, self.name, [args.script or "NAME", *args.args])
        if (args.pid is None) == (args.script is None):
            raise CommandError("give a script to run or --pid PID (one of them)")
        output = args.output or default_output()
        if args.output:
            _output.refuse_existing(output, args.force)
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
        builtins.profile = CallPhases()  # type: ignore[attr-defined]
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
        timeline = with_true_peaks(timeline)  # a spike between samples is in the series
        data = recording.dump_file(timeline)
        if args.force:
            _output.write_atomic(output, data)
            written = output
        else:
            written = _output.write_new(output, data)
        if written != output:  # it appeared while recording: said even with -q
            sys.stderr.write(f"memtrim: {output} appeared meanwhile: not overwritten\n")
        if not args.quiet or written != output:
            sys.stderr.write(f"memtrim: {summary(timeline)} recorded to {written}\n")
        sys.stderr.flush()


class CallPhases:
    """The ``profile`` builtin of ``memtrim record`` (``mprof run``'s): each call
    of a decorated function is a phase of the recording, named after it.

    ``@profile``, ``@profile(precision=..., stream=...)`` (the options of the
    line profiler's ``profile``, accepted and unused) and ``add_function``.
    A call that starts when no phase can open (64 are open already: deep
    recursion) runs unmarked. Generator functions are returned unchanged: a
    call only creates the generator. ``enable_by_count``, ``disable_by_count``
    and ``with profile:`` are accepted for scripts written for the line
    profiler and do nothing.
    """

    def __call__(self, func: Any = None, **options: Any) -> Any:
        """Decorate ``func``: its calls are marked as phases."""
        if func is None:
            return lambda f: self(f)
        if isinstance(func, (staticmethod, classmethod)):
            return type(func)(self(func.__func__))
        return _marking(func)

    def add_function(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """memory_profiler's ``add_function``: the decorated function (rebind it to use it)."""
        return self(func)

    def enable_by_count(self) -> None:
        """Accepted for line-profiler scripts: nothing to switch on."""

    def disable_by_count(self) -> None:
        """Accepted for line-profiler scripts: nothing to switch off."""

    def __enter__(self) -> CallPhases:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _marking(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with each call in a phase named after it."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        return func
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def marked_coroutine(*args: Any, **kwargs: Any) -> Any:
            handle = _open_phase(name)
            if handle is None:
                return await func(*args, **kwargs)
            with handle:
                return await func(*args, **kwargs)

        return marked_coroutine

    @functools.wraps(func)
    def marked(*args: Any, **kwargs: Any) -> Any:
        handle = _open_phase(name)
        if handle is None:
            return func(*args, **kwargs)
        with handle:
            return func(*args, **kwargs)

    return marked


def _open_phase(name: str) -> Any:
    try:
        return phase(name)
    except Exception:  # 64 phases open (deep recursion), or the recording has ended
        return None


def summary(timeline: Timeline) -> str:
    """``N samples, peak RSS X MiB`` (``..., Y MiB with children`` when followed)."""
    peak = peak_of(timeline.samples, "rss")
    candidates = [v for v in (timeline.peak_rss, peak and peak.value) if v is not None]
    text = f"{len(timeline.samples)} samples"
    if candidates:
        text += f", peak RSS {mib(max(candidates))}"
        total = peak_of(timeline.samples, "total")
        with_children = [v for v in (timeline.peak_total, total and total.value) if v is not None]
        if timeline.peak_total is not None and with_children:
            text += f" (own), {mib(max(with_children))} with children"
    return text


COMMAND = RecordCommand()
