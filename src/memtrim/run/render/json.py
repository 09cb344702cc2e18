"""A capture as JSON for machines (``memtrim run --json`` / ``memtrim report --json``).

Shape (byte values are integers; ``sites`` are per line of Python code,
largest first; ``stack`` goes from the outermost call to the line)::

    {"peak": {"bytes", "time", "sites": [{"filename", "function", "lineno",
                                          "bytes", "count", "stack": [...]}]},
     "at_exit": {"bytes", "sites": [...]}, "allocated": {"bytes", "sites": [...]},
     "timeline": [{"time", "heap", "rss"}], "meta": {...},
     "root", "sys_path", "seed"}

``at_exit`` is what was still allocated when the program ended (leaks,
caches, module globals); version 1 of this shape called it ``leaks``. Each
frame also has ``first_line``, its function's first line (0: not known).

Each view lists at most ``limit`` sites (100 by default; 0: all of them) and
says so: ``"sites_total"`` is how many lines have bytes in the view, and
``"sites_cut"`` how many of them are left out of ``"sites"``.

Each view also has ``"unattributed"``: the bytes no line can be charged with
(allocated without the GIL, or by C code with no Python frame), with the
reason and thread, and ``"threads"``: the view's bytes per thread.

With ``memtrim run --advise``, ``"advice"`` lists what to change, largest
saving first: ``{"kind", "filename", "lineno", "source", "type", "count",
"bytes", "after", "saving", "fix", "caveats", "measured", "holder",
"confidence", "qualname", "when", "error"}`` (docs/advice.md).
"""

from __future__ import annotations

import json
from typing import Any

from memtrim.run.capture import (
    Capture,
    Frame,
    Site,
    by_thread,
    sites,
    unattributed,
    view_total,
)

SITES_PER_VIEW = 100


def _frame(frame: Frame) -> dict[str, Any]:
    return {
        "filename": frame.filename,
        "function": frame.function,
        "lineno": frame.lineno,
        "first_line": frame.first_line,
    }


def _site(site: Site) -> dict[str, Any]:
    return {
        **_frame(site.frame),
        "bytes": site.bytes,
        "native": site.native,
        "count": site.count,
        "stack": [_frame(f) for f in site.stack],
    }


def _site_count(capture: Capture, view: str) -> int:
    """How many lines of code have bytes in ``view`` (what ``sites`` would list)."""
    per_frame: dict[int, int] = {}
    for node in capture.nodes:
        if node.frame >= 0:
            per_frame[node.frame] = per_frame.get(node.frame, 0) + node.view(view).bytes
    return sum(1 for size in per_frame.values() if size > 0)


def _view(capture: Capture, view: str, limit: int) -> dict[str, Any]:
    shown = sites(capture, view, limit or None)
    total = _site_count(capture, view)
    return {
        "bytes": view_total(capture, view),
        "native": sum(node.view(view).native for node in capture.nodes),
        "sites": [_site(s) for s in shown],
        "sites_total": total,
        "sites_cut": total - len(shown),
        "unattributed": [
            {"reason": u.reason, "thread": u.thread, "bytes": u.bytes, "count": u.count}
            for u in unattributed(capture, view)
        ],
        "threads": [
            {"name": name, "bytes": size, "count": count}
            for name, size, count in by_thread(capture, view)
        ],
    }


def capture_to_dict(capture: Capture, limit: int = SITES_PER_VIEW) -> dict[str, Any]:
    """The documented JSON shape of a capture, with at most ``limit`` sites
    per view (0: every site)."""
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    peak = _view(capture, "peak", limit)
    return {
        "format": "memtrim-run",
        "version": 3,
        "rss": capture.meta.get("rss", {}),
        "meta": capture.meta,
        "peak": {
            "bytes": capture.peak_bytes,
            "time": capture.peak_time,
            "attributed": peak.pop("bytes"),
            **peak,
        },
        "at_exit": _view(capture, "at_exit", limit),
        "allocated": _view(capture, "allocated", limit),
        "timeline": [{"time": t, "heap": h, "rss": r} for t, h, r in capture.timeline],
        "root": capture.root,
        "sys_path": capture.sys_path,
        "seed": capture.seed,
        **({"advice": capture.meta["advice"]} if "advice" in capture.meta else {}),
    }


def dumps_capture(capture: Capture, limit: int = SITES_PER_VIEW) -> str:
    """:func:`capture_to_dict` as indented JSON with a trailing newline."""
    return json.dumps(capture_to_dict(capture, limit), indent=1) + "\n"
