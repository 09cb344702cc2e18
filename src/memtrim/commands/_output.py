"""Writing result files: checked up front, written whole or not at all.

One policy for every command: a file that exists is never overwritten without
``--force`` (``-f``); the check is made before anything runs
(:func:`refuse_existing`), and a file written at the end goes into place
whole (:func:`write_atomic`) or, for names memtrim picked itself, beside any
file of the same name (:func:`write_new`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from memtrim.commands.errors import CommandError
from memtrim.model import files
from memtrim.model.files import write_atomic

__all__ = [
    "add_force",
    "check_force_flag",
    "check_writable",
    "refuse_existing",
    "write_atomic",
    "write_new",
]


def check_writable(path: str) -> None:
    """Fail early, before running anything, if ``path`` cannot be written."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CommandError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(directory):
        raise CommandError(f"cannot write {path}: no such directory {directory}")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise CommandError(f"cannot write {path}: permission denied")


def add_force(parser: argparse.ArgumentParser, help: str) -> None:
    """``--force``, the same flag in every command that writes files.

    ``-f`` means one thing in memtrim: the line profiler's ``--function``. Here
    it is caught, and :func:`check_force_flag` says what was meant.
    """
    parser.add_argument("--force", action="store_true", help=help)
    parser.add_argument(
        "-f", dest="misused_f", action="store_true", default=False, help=argparse.SUPPRESS
    )


def check_force_flag(args: argparse.Namespace, command: str, words: Sequence[Any] = ()) -> None:
    """Explain a ``-f`` given to a command that writes files (see :func:`add_force`).

    ``words`` are what followed on the command line (the program's target and
    arguments), to show the line profiler's command the user may have meant.
    """
    if getattr(args, "misused_f", False):
        target = " ".join(str(word) for word in words[:2]) or "NAME script.py"
        raise CommandError(
            f"memtrim {command} has no -f: to overwrite files use --force; to profile a "
            f"function line by line use: memtrim profile -f {target}"
        )


def refuse_existing(path: str, force: bool) -> None:
    """Fail early if ``path`` exists and ``--force`` was not given."""
    if not force and os.path.exists(path) and not os.path.isdir(path):
        raise CommandError(f"{path} exists: use --force to overwrite it")


def write_new(path: str, data: str | bytes) -> str:
    """Write ``data`` to ``path``, or beside it (``_1``, ``_2``...) if that exists;
    returns the path written (see :func:`memtrim.model.files.write_new`)."""
    try:
        return files.write_new(path, data)
    except FileExistsError as exc:
        raise CommandError(str(exc)) from None
