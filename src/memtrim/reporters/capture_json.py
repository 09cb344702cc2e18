"""A capture as JSON for machines (``memtrim run --json`` / ``memtrim report --json``).

Shape (byte values are integers; ``sites`` are per line of Python code,
largest first; ``stack`` goes from the outermost call to the line)::

    {"peak": {"bytes", "time", "sites": [{"filename", "function", "lineno",
                                          "bytes", "count", "stack": [...]}]},
     "leaks": {"bytes", "sites": [...]}, "allocated": {"bytes", "sites": [...]},
     "timeline": [{"time", "heap", "rss"}], "meta": {...}}
"""

from __future__ import annotations

import json
from typing import Any

from memtrim.analysis.capture import Capture, Frame, Site, sites, view_total

SITES_PER_VIEW = 100


def _frame(frame: Frame) -> dict[str, Any]:
    return {"filename": frame.filename, "function": frame.function, "lineno": frame.lineno}


def _site(site: Site) -> dict[str, Any]:
    return {
        **_frame(site.frame),
        "bytes": site.bytes,
        "count": site.count,
        "stack": [_frame(f) for f in site.stack],
    }


def capture_to_dict(capture: Capture, limit: int = SITES_PER_VIEW) -> dict[str, Any]:
    """The documented JSON shape of a capture."""
    return {
        "format": "memtrim-run",
        "version": 1,
        "meta": capture.meta,
        "peak": {
            "bytes": capture.peak_bytes,
            "time": capture.peak_time,
            "attributed": view_total(capture, "peak"),
            "sites": [_site(s) for s in sites(capture, "peak", limit)],
        },
        "leaks": {
            "bytes": view_total(capture, "leaks"),
            "sites": [_site(s) for s in sites(capture, "leaks", limit)],
        },
        "allocated": {
            "bytes": view_total(capture, "allocated"),
            "sites": [_site(s) for s in sites(capture, "allocated", limit)],
        },
        "timeline": [{"time": t, "heap": h, "rss": r} for t, h, r in capture.timeline],
    }


def dumps_capture(capture: Capture) -> str:
    """:func:`capture_to_dict` as indented JSON with a trailing newline."""
    return json.dumps(capture_to_dict(capture), indent=1) + "\n"
