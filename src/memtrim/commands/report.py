"""Render a capture of `memtrim run`: terminal summary, HTML, JSON.

memtrim report CAPTURE [--html FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from memtrim.commands import _output
from memtrim.commands._progress import Steps
from memtrim.commands.errors import CommandError
from memtrim.model import units
from memtrim.run import capture as capture_file
from memtrim.run.capture import Capture


def write_outputs(
    capture: Capture,
    path: str | None,
    html: str | None,
    json: str | None,
    force: bool,
    written: list[tuple[str, int]] | None = None,
    json_sites: int = 100,
) -> None:
    """Write the capture file and the requested reports, each whole or not at all.

    A file that cannot be written, or that exists without ``force``, raises
    :class:`CommandError` (after the others were tried); nothing half-written
    is left behind. ``written`` gets ``(path, bytes)`` of each file written.
    ``json_sites``: the sites per view in the JSON report (0: all of them).
    """
    failed: list[str] = []
    done = [] if written is None else written
    if path:
        _write(path, lambda: capture_file.dumps(capture), failed, force, done)
    if html:
        from memtrim.run.render.html import render_html

        _write(html, lambda: render_html(capture), failed, force, done)
    if json:
        from memtrim.run.render.json import dumps_capture

        _write(json, lambda: dumps_capture(capture, json_sites), failed, force, done)
    if failed:
        raise CommandError("; ".join(failed))


def _write(
    path: str,
    render: Callable[[], str | bytes],
    failed: list[str],
    force: bool,
    written: list[tuple[str, int]],
) -> None:
    try:
        data = render()
        _output.write_atomic(path, data, force=force)
    except FileExistsError:
        failed.append(f"{path} exists: use --force to overwrite it")
    except OSError as exc:
        failed.append(f"cannot write {path}: {exc.strerror or exc}")
    else:
        size = len(data.encode() if isinstance(data, str) else data)  # utf-8, as written
        written.append((path, size))


def describe_written(written: list[tuple[str, int]], shown: dict[str, str] | None = None) -> str:
    """``wrote a.memtrim (12.0 KiB), r.html (80.1 KiB)``: each file written, with
    its size; ``shown`` maps a path to the name the user gave it."""
    names = shown or {}
    return "wrote " + ", ".join(
        f"{names.get(path, path)} ({units.human(size)})" for path, size in written
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: give a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must be >= 0")
    return value


def _positive_count(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError("invalid count 0: must be at least 1")
    return value


def add_json_sites(parser: argparse.ArgumentParser) -> None:
    """``--json-sites N``: how many sites each view of the JSON report lists."""
    parser.add_argument(
        "--json-sites",
        type=_count,
        default=100,
        metavar="N",
        help="sites per view in the JSON report (default 100; 0: all); the report "
        "says how many it left out",
    )


class ReportCommand:
    """Show a capture written by `memtrim run` and turn it into HTML or JSON."""

    name = "report"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("capture", help="a capture file written by memtrim run")
        parser.add_argument("--html", metavar="FILE", help="write the HTML report")
        parser.add_argument("--json", metavar="FILE", help="write the JSON report")
        _output.add_force(parser, "overwrite the reports if they exist")
        add_json_sites(parser)
        parser.add_argument(
            "--top",
            type=_positive_count,
            default=8,
            metavar="N",
            help="lines per table (default 8)",
        )

    def run(self, args: argparse.Namespace) -> int:
        _output.check_force_flag(args, self.name)
        steps = Steps()
        try:
            steps(f"reading {args.capture}")
            capture = capture_file.read(args.capture)
        except capture_file.CaptureError as exc:
            raise CommandError(str(exc)) from None
        finally:
            steps.close()
        for path in (args.html, args.json):
            if path:
                _output.refuse_existing(path, args.force)
                _output.check_writable(path)
        written: list[tuple[str, int]] = []
        steps = Steps()
        try:
            steps("writing the reports")
            write_outputs(
                capture,
                None,
                args.html,
                args.json,
                force=args.force,
                written=written,
                json_sites=args.json_sites,
            )
        finally:
            steps.close()
            if written:
                print(describe_written(written), file=sys.stderr)
        if not (args.html or args.json):
            from memtrim.commands._advice import print_advice
            from memtrim.run.render.summary import render_summary

            render_summary(capture, sys.stdout, top=args.top)
            print_advice(capture, sys.stdout)
        return 0


COMMAND = ReportCommand()
