"""``--python-only``: the one option every profiling command shares about native memory."""

from __future__ import annotations

import argparse
import os

from memtrim.engine.hooks import PYTHON_ONLY_ENV

HELP = (
    "count only what Python's allocators and numpy allocate; by default memtrim also counts "
    "what C libraries allocate (malloc, mmap: native memory)"
)


def add_python_only(parser: argparse.ArgumentParser) -> None:
    """Add ``--python-only`` to a command's options."""
    parser.add_argument("--python-only", action="store_true", help=HELP)


def apply_python_only(args: argparse.Namespace) -> None:
    """Make ``--python-only`` hold for this process and the processes it starts."""
    if getattr(args, "python_only", False):
        os.environ[PYTHON_ONLY_ENV] = "1"
