"""Profile functions line by line: exact increments, peaks and occurrences.

Decorate functions with ``@profile`` (no import needed: memtrim puts it in
builtins) or name them with ``-f``; the tables are printed when the script ends.
"""

from __future__ import annotations

import argparse
import builtins
import sys
from typing import Any

from memtrim.api.profile import DEFAULT_PRECISION, LineProfiler, check_precision
from memtrim.commands import _output, _script
from memtrim.commands.errors import CommandError
from memtrim.engine import heap, tracer
from memtrim.reporters.json import dumps_tables
from memtrim.reporters.text import format_table


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
            "pattern such as 'load_*'; repeatable)",
        )
        parser.add_argument(
            "--precision",
            type=_precision,
            default=DEFAULT_PRECISION,
            help=f"decimals of the MiB figures (default {DEFAULT_PRECISION})",
        )
        parser.add_argument("-o", "--output", metavar="FILE", help="write the tables to FILE")
        parser.add_argument("--json", metavar="FILE", help="also write the tables as JSON")
        parser.add_argument("script", help="the Python script to run")
        parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")

    def run(self, args: argparse.Namespace) -> int:
        script = _script.load_script(args.script)
        targets = {name: _script.functions_named(script.code, name) for name in args.function}
        missing = [name for name, found in targets.items() if not found]
        if missing:
            raise CommandError(f"no function named {missing[0]!r} in {args.script}")
        for path in (args.output, args.json):
            if path:
                _output.check_writable(path)

        heap.ensure_installed()
        profiler = LineProfiler()
        for codes in targets.values():
            for code in codes:
                profiler.add_code(code)
        if targets:
            tracer.trace_everywhere()
        builtins.profile = _builtin_profile(profiler)  # type: ignore[attr-defined]

        error: BaseException | None = None
        with _script.as_main(script, args.args) as module:
            try:
                _script.run(script, module)
            except BaseException as exc:
                error = exc
        tracer.stop_everywhere()
        self._report(profiler, args)
        return _script.exit_like_python(error)

    def _report(self, profiler: LineProfiler, args: argparse.Namespace) -> None:
        tables = profiler.tables()
        text = "".join(format_table(t, args.precision) for t in tables if t.ran)
        if args.output:
            _output.write_atomic(args.output, text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
        if args.json:
            _output.write_atomic(args.json, dumps_tables(tables))


def _builtin_profile(profiler: LineProfiler) -> Any:
    """The ``profile`` put in builtins: ``@profile`` or ``@profile(...)``."""

    def profile(func: Any = None, **options: Any) -> Any:
        if func is None:
            return profiler
        return profiler(func)

    return profile


COMMAND = ProfileCommand()
