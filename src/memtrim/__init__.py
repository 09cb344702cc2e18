"""memtrim: find what uses memory in a Python program, exactly, and make it use less.

The public API is re-exported here lazily, so that ``python -m memtrim`` and
``import memtrim`` stay cheap: a name's module is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # line-by-line profiler (issue 2)
    "profile": "memtrim.lines.session",
    "LineProfiler": "memtrim.lines.session",
    "show_results": "memtrim.lines.session",
    # memory over time (issue 3)
    "memory_usage": "memtrim.timeline.session",
    "track": "memtrim.timeline.session",
    "phase": "memtrim.timeline.session",
    # objects: sizing, census, why alive (issue 4)
    "asizeof": "memtrim.objects.api",
    "asizesof": "memtrim.objects.api",
    "asized": "memtrim.objects.api",
    "flatsize": "memtrim.objects.api",
    "retained": "memtrim.objects.api",
    "census": "memtrim.objects.api",
    "growth": "memtrim.objects.api",
    "why": "memtrim.objects.api",
    # IPython extension hook (%load_ext memtrim)
    "load_ipython_extension": "memtrim.ipython",
    "unload_ipython_extension": "memtrim.ipython",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'memtrim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
