"""Compare two runs: what grew, line by line and stack by stack, for CI.

memtrim diff BASE NEW [--threshold PCT% | SIZE] [--json FILE] [--html FILE] [--top N]

BASE and NEW are two captures of ``memtrim run`` (or two of its ``--json``
reports). With ``--threshold``, the command exits 1 when the peak or the
leaks (what was still allocated at exit) grew more than that: a percentage
of the base (``5%``) or a size (``10M``).
"""

from __future__ import annotations

import argparse
import json
import sys

from memtrim.commands import _output
from memtrim.commands.errors import CommandError
from memtrim.model import units
from memtrim.run import capture as capture_file
from memtrim.run import diff as run_diff


def _threshold(text: str) -> tuple[float | None, int | None]:
    value = text.strip()
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if percent < 0:
                raise ValueError
            return percent, None
        return None, units.parse_size(value, zero=True)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid threshold {text!r}: a percentage (5%) or a size (10M)"
        ) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}: give a whole number > 0")
    return value


def load_side(path: str) -> run_diff.Side:
    """A capture, or a ``--json`` report, as one side of the diff (one-line errors)."""
    try:
        with open(path, "rb") as file:
            head = file.read(1)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head == b"{":
        try:
            with open(path, encoding="utf-8") as file:
                data = json.load(file)
            if not isinstance(data, dict) or data.get("format") != "memtrim-run":
                raise ValueError("not a memtrim run report")
            return run_diff.from_report(data, path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"{path}: {exc}") from None
    try:
        return run_diff.from_capture(capture_file.read(path), path)
    except capture_file.CaptureError as exc:
        raise CommandError(str(exc)) from None


class DiffCommand:
    """Compare two runs: what grew, line by line and stack by stack."""

    name = "diff"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        # the usage line argparse builds wraps to the terminal; a "%" in it must
        # be written "%%" (argparse formats the usage with "%")
        parser.add_argument("base", help="the capture (or --json report) to compare with")
        parser.add_argument("new", help="the capture (or --json report) of the run to check")
        parser.add_argument(
            "--threshold",
            type=_threshold,
            metavar="PCT%|SIZE",
            help="exit 1 when the peak or the leaks grew more than this (5%%, 10M)",
        )
        parser.add_argument("--json", metavar="FILE", help="also write the diff as JSON")
        parser.add_argument(
            "--html",
            metavar="FILE",
            help="also write a one-file page: the two timelines overlaid, a differential "
            "flame graph (grown red, shrunk blue), the lines that changed",
        )
        _output.add_force(parser, "overwrite the JSON file")
        parser.add_argument(
            "--top", type=_positive_int, default=10, metavar="N", help="lines per view (default 10)"
        )

    def run(self, args: argparse.Namespace) -> int:
        for path in (args.json, args.html):
            if path:
                _output.refuse_existing(path, args.force)
                _output.check_writable(path)
        base, new = load_side(args.base), load_side(args.new)
        result = run_diff.compare(base, new)
        percent, size = args.threshold or (None, None)
        failed = run_diff.grew_too_much(result, percent, size) if args.threshold else []
        from memtrim.run.render.diff import diff_to_dict, render_diff

        render_diff(result, base, new, sys.stdout, top=args.top)
        if args.json:
            text = json.dumps(diff_to_dict(result, base, new, failed), indent=1) + "\n"
            _output.write_atomic(args.json, text)
        if args.html:
            from memtrim.run.render.diff_html import render_diff_html

            _output.write_atomic(args.html, render_diff_html(result, base, new))
        if failed:
            names = ", ".join("the peak" if f == "peak" else "the leaks" for f in failed)
            print(f"memtrim diff: {names} grew more than the threshold", file=sys.stderr)
            return 1
        return 0


COMMAND = DiffCommand()
