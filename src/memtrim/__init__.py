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
    "profile": "memtrim.api.profile",
    "LineProfiler": "memtrim.api.profile",
    "show_results": "memtrim.api.profile",
    # memory over time (issue 3)
    "memory_usage": "memtrim.api.timeline",
    "track": "memtrim.api.timeline",
    "phase": "memtrim.api.timeline",
    # objects: sizing, census, why alive (issue 4)
    "asizeof": "memtrim.api.objects",
    "asizesof": "memtrim.api.objects",
    "asized": "memtrim.api.objects",
    "flatsize": "memtrim.api.objects",
    "retained": "memtrim.api.objects",
    "census": "memtrim.api.objects",
    "growth": "memtrim.api.objects",
    "why": "memtrim.api.objects",
    # IPython extension hook (%load_ext memtrim)
    "load_ipython_extension": "memtrim.api.ipython",
    "unload_ipython_extension": "memtrim.api.ipython",
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
