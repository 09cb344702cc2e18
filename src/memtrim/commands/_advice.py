"""The advisor's options (``memtrim run`` and ``profile``), and the advice a capture
holds printed as a table (``memtrim run --advise``, ``memtrim report``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from memtrim.commands.errors import CommandError
from memtrim.model import units

if TYPE_CHECKING:  # not imported by the line profiler's command for this
    from memtrim.run.capture import Capture


def print_advice(capture: Capture, stream: TextIO, cwd: str | None = None) -> None:
    """The advice a capture holds, as a table (nothing if it holds none)."""
    if "advice" not in capture.meta:
        return
    from memtrim.advice.render.text import print_advice
    from memtrim.model.advice import parse_records

    try:
        items = parse_records(capture.meta["advice"])
    except ValueError as exc:
        raise CommandError(f"the capture's advice is damaged: {exc}") from None
    print_advice(items, stream, cwd=cwd)


def add_advise_options(parser: argparse.ArgumentParser, help: str) -> None:
    """``--advise`` (``help`` says what it adds) and ``--advise-threshold``."""
    parser.add_argument("--advise", action="store_true", help=help)
    parser.add_argument(
        "--advise-threshold",
        type=_threshold,
        default=None,
        metavar="SIZE",
        help="with --advise: leave out advice that saves less (default 1M; 0: all)",
    )


def check_advise_options(args: argparse.Namespace) -> None:
    """``--advise-threshold`` without ``--advise`` is a usage error."""
    if args.advise_threshold is not None and not args.advise:
        raise CommandError("--advise-threshold goes with --advise")


def _threshold(text: str) -> int:
    """An advice threshold: a size, 0 included."""
    try:
        return units.parse_size(text, zero=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
