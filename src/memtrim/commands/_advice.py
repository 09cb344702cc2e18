"""The advice a capture holds, printed as a table (``memtrim run --advise``, ``memtrim report``)."""

from __future__ import annotations

from typing import TextIO

from memtrim.commands.errors import CommandError
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
