"""Writing result files: checked up front, written whole or not at all.

One policy for every command: a file that exists is never overwritten without
``--force`` (``-f``); the check is made before anything runs
(:func:`refuse_existing`), and a file written at the end goes into place
whole (:func:`write_atomic`) or, for names memtrim picked itself, beside any
file of the same name (:func:`write_new`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from memtrim.commands.errors import CommandError


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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _temporary(path: str, data: str | bytes) -> str:
    """``data`` in a new file beside ``path``, with the usual permissions (0666
    less the umask, not the temporary file's 0600); returns its name."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=".memtrim-", dir=directory)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, mode, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_atomic(path: str, data: str | bytes, *, force: bool = True) -> None:
    """Write to a temporary file beside ``path``, then move it into place.

    Without ``force``, a file that appeared at ``path`` meanwhile is kept:
    ``FileExistsError`` (the new file is linked, which fails where a rename
    would replace).
    """
    tmp = _temporary(path, data)
    try:
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def write_new(path: str, data: str | bytes) -> str:
    """Write ``data`` to ``path``, or to ``path`` with ``_1``, ``_2``... before its
    suffix if that exists: never over a file. Whole or not at all. Returns the
    path written."""
    stem, suffix = os.path.splitext(path)
    tmp = _temporary(path, data)
    try:
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
