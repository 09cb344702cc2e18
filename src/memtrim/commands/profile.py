"""Profile functions line by line: exact increments, peaks and occurrences.

Decorate functions with ``@profile`` (no import needed: memtrim puts it in
builtins) or name them with ``-f``; the tables are printed when the program
ends: after its non-daemon threads have finished and its ``atexit`` handlers
have run, as the interpreter would end it.

The ``profile`` put in builtins is the run's :class:`LineProfiler`, as under
``python -m memory_profiler``: a decorator, and ``profile.enable_by_count()``,
``with profile:``, ``profile.add_function``, ``profile.code_map``... On Python
3.12+ ``@profile`` returns the function itself, registered for profiling
(sys.monitoring needs no wrapper), exactly as ``-f`` does; on 3.11 it wraps it
to switch the tracer on while it runs. ``-o FILE`` appends the tables to FILE,
as memory_profiler does.
"""

from __future__ import annotations

import argparse
import atexit
import builtins
import os
import sys
from types import CodeType
from typing import Any

from memtrim.commands import _native, _output, _script
from memtrim.commands._advice import add_advise_options, check_advise_options
from memtrim.commands._targets import ModuleTargets
from memtrim.commands.errors import CommandError
from memtrim.engine import hooks, tracer
from memtrim.lines.render.json import dumps_tables
from memtrim.lines.render.text import format_table
from memtrim.lines.session import (
    DEFAULT_PRECISION,
    LineProfiler,
    check_precision,
    code_of,
    missed_message,
    warn,
)
from memtrim.lines.session import profile as per_call_profile


def _precision(text: str) -> int:
    try:
        return check_precision(int(text))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"invalid precision {text!r}: give a whole number from 0 to 12"
        ) from None


class ProfileCommand:
    """Profile functions line by line (memory_profiler's table, exact numbers)."""

    name = "profile"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "-f",
            "--function",
            action="append",
            default=[],
            metavar="NAME",
            help="profile the script's functions named NAME (plain or qualified name, or a "
            "pattern such as 'load_*'), or a function of a module the script imports "
            "(json.dumps, pkg.mod.Class.method); repeatable",
        )
        parser.add_argument(
            "--precision",
            type=_precision,
            default=DEFAULT_PRECISION,
            help=f"decimals of the MiB figures (default {DEFAULT_PRECISION})",
        )
        parser.add_argument("-o", "--output", metavar="FILE", help="write the tables to FILE")
        _native.add_python_only(parser)
        parser.add_argument("--json", metavar="FILE", help="also write the tables as JSON")
        add_advise_options(
            parser,
            "under the tables, what to change where a line's figures call for it (a line "
            "that builds a big list to use once, a file read whole), with the bytes it saves",
        )
        parser.add_argument("script", nargs="?", help="the Python script to run")
        parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")

    def run(self, args: argparse.Namespace) -> int:
        _native.apply_python_only(args)
        if args.script is None:
            raise CommandError("the following arguments are required: script")
        check_advise_options(args)
        script = _script.load_script(args.script)
        in_script, in_modules = _split_targets(script.code, args.function, args.script)
        for path in (args.output, args.json):
            if path:
                _output.check_writable(path)

        # held from the start of the script until after the tables are written
        # (atexit runs handlers last-registered first: this after report.write)
        atexit.register(hooks.acquire("memtrim profile").release)
        if not tracer.MONITORING:
            tracer.watch_profilers()
        profiler = _BuiltinProfile(args.precision)
        for codes in in_script.values():
            for code in codes:
                profiler.add_code(code)
        modules = ModuleTargets(in_modules, profiler.add_code)
        if args.function:
            tracer.trace_everywhere()
        report = _Report(profiler, modules, args)
        builtins.profile = profiler  # type: ignore[attr-defined]

        error: BaseException | None = None
        with _script.as_main(script, args.args) as module:
            # atexit runs its handlers last-registered first, after the
            # interpreter has waited for the program's threads: this one runs
            # after the program's own handlers.
            atexit.register(report.write)
            modules.start()
            try:
                _script.run(script, module)
            except BaseException as exc:
                error = exc
        return _script.exit_like_python(error)


def _split_targets(
    code: CodeType, names: list[str], path: str
) -> tuple[dict[str, list[CodeType]], list[str]]:
    """``-f`` names found in the script, and dotted names left for modules."""
    in_script: dict[str, list[CodeType]] = {}
    in_modules: list[str] = []
    for name in names:
        found = _script.functions_named(code, name)
        if found:
            in_script[name] = found
        elif "." in name.strip(".") and not name.startswith("."):
            in_modules.append(name)
        else:
            raise CommandError(f"no function named {name!r} in {path}")
    return in_script, in_modules


class _Report:
    """Writes the tables once, at the end of the program."""

    def __init__(self, profiler: LineProfiler, modules: ModuleTargets, args: Any) -> None:
        self.profiler = profiler
        self.modules = modules
        self.args = args

    def write(self) -> None:
        missed_some, refused = tracer.missed_any()
        missed = [fn.name for fn in self.profiler.functions if fn.missed]
        tracer.stop_everywhere()
        self.modules.stop()
        tables = self.profiler.tables()
        text = "".join(
            format_table(table, self.profiler.precisions.get(fn.code, self.args.precision))
            for fn, table in zip(self.profiler.functions, tables, strict=True)
            if table.ran
        )
        if self.args.advise:
            text += _line_advice(tables, self.args.advise_threshold)
        try:
            if self.args.output:
                _append(self.args.output, text)
            else:
                _write_stdout(text)
            if self.args.json:
                _output.write_atomic(self.args.json, dumps_tables(tables))
        except (OSError, ValueError, CommandError) as exc:
            warn(f"could not write the tables: {exc}")
        problems = list(self.modules.problems())
        for line in problems:
            warn(line)
        silent = not (text or missed or missed_some or refused or problems)
        if silent and not getattr(self.profiler, "streamed", False) and _interactive():
            warn(_nothing_profiled(bool(self.profiler.functions or self.args.function)))
        if refused:
            which = f"calls of {', '.join(missed)}" if missed else "calls in that thread"
            warn(
                "an audit hook refused memtrim's profile function (sys.setprofile): "
                f"{which} were not measured"
            )
        elif missed or missed_some:
            warn(missed_message(missed))


def _interactive() -> bool:
    """Is memtrim's stderr a terminal? (Hints are for a person, not for logs.)"""
    try:
        return os.isatty(2)
    except OSError:
        return False


def _nothing_profiled(chosen: bool) -> str:
    """Why there is no table, and how to get one."""
    if chosen:
        return "no table: the profiled functions never ran"
    return (
        "no function was profiled: decorate the ones to look at with @profile, or name "
        "them with -f NAME (-f '*' for every function of the script); `memtrim run` "
        "profiles the whole program"
    )


def _line_advice(tables: list[Any], threshold: int | None) -> str:
    """The advice the tables' figures call for, as text under them."""
    from memtrim.advice.render.text import advice_text
    from memtrim.advice.session import line_advice
    from memtrim.model.advice import DEFAULT_THRESHOLD

    rows = [
        (t.filename, t.function, r.lineno, r.source, r.peak_increment or 0, r.increment or 0)
        for t in tables
        for r in t.lines
        if r.ran
    ]
    limit = DEFAULT_THRESHOLD if threshold is None else threshold
    found = line_advice(rows, limit)
    try:
        cwd: str | None = os.getcwd()
    except OSError:  # the program removed its directory: paths stay absolute
        cwd = None
    return "\n" + advice_text(found, width=100, cwd=cwd) + "\n"


def _append(path: str, text: str) -> None:
    """Add ``text`` at the end of ``path`` (created if missing), as memory_profiler's ``-o``."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def _write_stdout(text: str) -> None:
    """To ``sys.stdout``; if the program closed it, straight to file descriptor 1."""
    if not text:
        return
    stream = sys.stdout
    if stream is not None and not stream.closed:
        stream.write(text)
        stream.flush()
        return
    data = text.encode(getattr(sys.__stdout__, "encoding", None) or "utf-8", "replace")
    while data:
        data = data[os.write(1, data) :]


class _BuiltinProfile(LineProfiler):
    """The ``profile`` put in builtins: the run's profiler, as memory_profiler's is.

    ``@profile`` or ``@profile(precision=N, stream=s)``. With ``stream``, the
    function's table goes to that stream after each call, as
    ``memtrim.profile`` does; with only ``precision``, the table printed at
    the end uses it. Everything else is :class:`LineProfiler`'s.
    """

    def __init__(self, precision: int) -> None:
        super().__init__()
        self.precision = precision  # --precision
        self.streamed = False  # a function with its own stream= prints its own tables

    def __call__(  # type: ignore[override]
        self,
        func: Any = None,
        stream: Any = None,
        precision: int | None = None,
        backend: str | None = None,
    ) -> Any:
        """Profile ``func``; its table is printed at the end of the run."""
        if precision is not None:
            check_precision(precision)
        if func is None:
            return lambda f: self(f, stream=stream, precision=precision, backend=backend)
        if stream is not None:
            self.streamed = True
            return per_call_profile(
                func, stream=stream, precision=self.precision if precision is None else precision
            )
        if precision is not None:
            self.precisions[code_of(func)] = precision
        if tracer.MONITORING:
            # sys.monitoring follows the code object: no wrapper, no C-level
            # call, the program keeps its own function (tables at the end).
            self.add_function(func)
            return func
        return super().__call__(func)

    def show_results(self, stream: Any = None, precision: int | None = None) -> None:
        """The tables so far (``--precision`` unless told)."""
        self.print_stats(stream, self.precision if precision is None else precision)


COMMAND = ProfileCommand()
