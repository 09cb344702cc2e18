"""Line tables for machines: plain JSON, byte values as integers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from memtrim.lines.model import FunctionTable

FORMAT_VERSION = 1


def tables_to_dict(tables: Iterable[FunctionTable]) -> dict[str, Any]:
    """The documented shape: ``{"functions": [{"function", "filename", "lines": [...]}]}``.

    Only lines that ran are listed; every byte figure is an ``int``.
    """
    return {
        "format": "memtrim-lines",
        "version": FORMAT_VERSION,
        "functions": [
            {
                "function": table.function,
                "filename": table.filename,
                "lines": [
                    {
                        "lineno": row.lineno,
                        "source": row.source,
                        "occurrences": row.occurrences,
                        "mem_usage": row.mem_usage,
                        "increment": row.increment,
                        "peak_increment": row.peak_increment,
                    }
                    for row in table.lines
                    if row.ran
                ],
            }
            for table in tables
            if table.ran
        ],
    }


def dumps_tables(tables: Iterable[FunctionTable]) -> str:
    """Serialize :func:`tables_to_dict` with a trailing newline."""
    return json.dumps(tables_to_dict(tables), indent=2) + "\n"
