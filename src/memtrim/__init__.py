"""memtrim: find what uses memory in a Python program, exactly, and make it use less.

The public API is re-exported here lazily, so that ``python -m memtrim`` and
``import memtrim`` stay cheap: a name's module is imported on first use. Type
checkers see the real definitions (the ``TYPE_CHECKING`` block below).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the same names, imported for type checkers only
    from memtrim.advice.render.text import AdviceList
    from memtrim.advice.session import advise
    from memtrim.guard.session import MemoryLimitExceeded, MemoryLimitWarning, limit
    from memtrim.ipython import load_ipython_extension, unload_ipython_extension
    from memtrim.lines.model import LineTable
    from memtrim.lines.session import LineProfiler, profile, show_results
    from memtrim.model.advice import Advice
    from memtrim.model.files import FormatError, dump, load
    from memtrim.model.findings import Amount, Finding, Site
    from memtrim.model.rss import RssBreakdown
    from memtrim.objects.api import (
        asized,
        asizeof,
        asizesof,
        census,
        flatsize,
        growth,
        retained,
        why,
    )
    from memtrim.objects.census import Census
    from memtrim.rss.session import explain
    from memtrim.run.capture import Capture
    from memtrim.run.lifecycle import ProgramRun
    from memtrim.run.session import ProgramProfiler
    from memtrim.timeline.model import Timeline
    from memtrim.timeline.session import Track, memory_usage, phase, track

# public name -> module that defines it
_EXPORTS = {
    # line by line
    "profile": "memtrim.lines.session",
    "LineProfiler": "memtrim.lines.session",
    "show_results": "memtrim.lines.session",
    "LineTable": "memtrim.lines.model",
    # the whole program
    "ProgramProfiler": "memtrim.run.session",
    "ProgramRun": "memtrim.run.lifecycle",
    "Capture": "memtrim.run.capture",
    # memory over time
    "memory_usage": "memtrim.timeline.session",
    "track": "memtrim.timeline.session",
    "phase": "memtrim.timeline.session",
    "Track": "memtrim.timeline.session",
    "Timeline": "memtrim.timeline.model",
    # objects: sizing, census, why alive
    "asizeof": "memtrim.objects.api",
    "asizesof": "memtrim.objects.api",
    "asized": "memtrim.objects.api",
    "flatsize": "memtrim.objects.api",
    "retained": "memtrim.objects.api",
    "census": "memtrim.objects.api",
    "growth": "memtrim.objects.api",
    "why": "memtrim.objects.api",
    "Census": "memtrim.objects.census",
    # advice: what to change, with measured savings
    "advise": "memtrim.advice.session",
    "Advice": "memtrim.model.advice",
    "AdviceList": "memtrim.advice.render.text",
    # budgets in code
    "limit": "memtrim.guard.session",
    "MemoryLimitExceeded": "memtrim.guard.session",
    "MemoryLimitWarning": "memtrim.guard.session",
    # the RSS explained
    "explain": "memtrim.rss.session",
    "RssBreakdown": "memtrim.model.rss",
    # the shared result model: sites, amounts, findings; saved results
    "Site": "memtrim.model.findings",
    "Amount": "memtrim.model.findings",
    "Finding": "memtrim.model.findings",
    "load": "memtrim.model.files",
    "dump": "memtrim.model.files",
    "FormatError": "memtrim.model.files",
    # IPython extension hook (%load_ext memtrim)
    "load_ipython_extension": "memtrim.ipython",
    "unload_ipython_extension": "memtrim.ipython",
}

__all__ = [
    "Advice",
    "AdviceList",
    "Amount",
    "Capture",
    "Census",
    "Finding",
    "FormatError",
    "LineProfiler",
    "LineTable",
    "MemoryLimitExceeded",
    "MemoryLimitWarning",
    "ProgramProfiler",
    "ProgramRun",
    "RssBreakdown",
    "Site",
    "Timeline",
    "Track",
    "advise",
    "asized",
    "asizeof",
    "asizesof",
    "census",
    "dump",
    "explain",
    "flatsize",
    "growth",
    "limit",
    "load",
    "load_ipython_extension",
    "memory_usage",
    "phase",
    "profile",
    "retained",
    "show_results",
    "track",
    "unload_ipython_extension",
    "why",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'memtrim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
