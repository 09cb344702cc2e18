"""The ``memtrim`` command line: one module per subcommand.

``memtrim SCRIPT`` and ``python -m memtrim SCRIPT`` mean ``memtrim profile
SCRIPT`` (memory_profiler's habit). Each subcommand module defines a class with
``name``, a docstring (its help), ``prepare_parser(parser)`` and
``run(args) -> int``; bad input raises :class:`CommandError` (one line on
stderr, exit status 2).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn, Protocol

from memtrim.commands import _script
from memtrim.commands.errors import CommandError

# subcommand name -> module defining ``COMMAND``
_COMMANDS = {
    "profile": "memtrim.commands.profile",
    "run": "memtrim.commands.run",
    "report": "memtrim.commands.report",
    "record": "memtrim.commands.record",
    "plot": "memtrim.commands.plot",
    "diff": "memtrim.commands.diff",
}
DEFAULT_COMMAND = "profile"


class Command(Protocol):
    """What a subcommand module exports as ``COMMAND``."""

    name: str

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


def _value_options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings of ``parser`` that take a value."""
    return {
        option
        for action in parser._actions
        if action.nargs != 0
        for option in action.option_strings
    }


def available() -> dict[str, str]:
    """Subcommands whose module is present in this installation."""
    found = {}
    for name, module in _COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = module
    return found


def _load(module: str) -> Any:
    return importlib.import_module(module).COMMAND


def _top_help(commands: dict[str, str]) -> str:
    lines = [
        "usage: memtrim [COMMAND] [options] script.py [args...]",
        "",
        "Find what uses memory in a Python program, exactly.",
        "",
        "commands:",
    ]
    width = max(shutil.get_terminal_size().columns, 40)  # $COLUMNS, the terminal, or 80
    for name, module in commands.items():
        doc = (_load(module).__doc__ or "").strip().splitlines()
        lines += textwrap.wrap(
            doc[0] if doc else "",
            width,
            initial_indent=f"  {name:<9} ",
            subsequent_indent=" " * 12,
        ) or [f"  {name}"]
    lines += ["", f"With no command, `{DEFAULT_COMMAND}` is meant: memtrim script.py [args...]"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``memtrim`` and ``python -m memtrim``; returns the exit status."""
    # the process's own command line: the program's state is kept to the end
    _script.keep_program_state(argv is None)
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = available()
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(_top_help(commands))
        return 0
    if argv and argv[0] == "--version":
        from memtrim import __version__

        print(f"memtrim {__version__}")
        return 0
    name = argv.pop(0) if argv and argv[0] in commands else DEFAULT_COMMAND
    if not argv and name == DEFAULT_COMMAND:
        sys.stderr.write("memtrim: give a script to profile: memtrim script.py [args...]\n")
        return 2
    try:
        command = _load(commands[name])
        parser = Parser(prog=f"memtrim {name}", description=command.__doc__)
        command.prepare_parser(parser)
        if getattr(command, "runs_program", False):
            own, program = _script.split_program(argv, _value_options(parser))
            args = parser.parse_args(own)
            args.program = program
        else:
            args = parser.parse_args(argv)
        return command.run(args)
    except CommandError as exc:
        sys.stderr.write(f"memtrim: {exc}\n")
        return exc.exit_code
