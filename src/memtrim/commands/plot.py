"""Plot a recording: memory over time, the peak marked, phases and children shown.

``memtrim plot [FILE] [-o out.png|out.svg|out.html]``. FILE defaults to the
newest ``memtrim_*.mtrec`` in the current directory, the output to FILE with
``.png``. PNG and SVG need matplotlib (``pip install 'memtrim[plot]'``); the
HTML page is self-contained (chart inline, data as JSON, works offline).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from memtrim.commands import _output
from memtrim.commands.errors import CommandError
from memtrim.timeline import recording


def newest_recording(directory: str = ".") -> str:
    """The most recently modified ``memtrim_*.mtrec`` in ``directory``."""
    found = glob.glob(os.path.join(directory, f"memtrim_*{recording.SUFFIX}"))
    if not found:
        where = os.path.abspath(directory)
        raise CommandError(f"no recording in {where}: run `memtrim record script.py` first")
    return max(found, key=lambda path: (os.path.getmtime(path), path))


class PlotCommand:
    """Plot a recording made by `memtrim record` (PNG, SVG or offline HTML)."""

    name = "plot"

    def prepare_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "file", nargs="?", help="the recording (default: the newest memtrim_*.mtrec here)"
        )
        parser.add_argument(
            "-o", "--output", metavar="OUT", help="out.png, out.svg or out.html (default FILE.png)"
        )
        _output.add_force(parser, "overwrite OUT")
        parser.add_argument("-q", "--quiet", action="store_true", help="say nothing when done")

    def run(self, args: argparse.Namespace) -> int:
        _output.check_force_flag(args, self.name)
        from memtrim.timeline.render import plot

        source = args.file or newest_recording()
        output = args.output or os.path.splitext(source)[0] + ".png"
        try:
            fmt = plot.format_of(output)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        _output.refuse_existing(output, args.force)
        _output.check_writable(output)
        try:
            timeline = recording.load(source)
        except recording.RecordingError as exc:
            raise CommandError(str(exc)) from None
        if not timeline.samples:
            raise CommandError(f"{source} holds no samples: nothing to plot")
        try:
            data = plot.render(timeline, output, fmt)
        except plot.PlotUnavailableError as exc:
            raise CommandError(str(exc)) from None
        _output.write_atomic(output, data, force=args.force)
        if not args.quiet:
            sys.stderr.write(f"memtrim: plot written to {output}\n")
        return 0


COMMAND = PlotCommand()
