"""The shared vocabulary of memtrim's results: sites, amounts, findings, units, files.

Every product (line tables, ``memtrim run`` captures, timelines, censuses)
speaks it: each result lists its :class:`Finding` objects (``findings()``),
prints bytes with :mod:`memtrim.model.units` and is saved and opened with
:mod:`memtrim.model.files`. Nothing here imports the engine or a product
module (the file readers are looked up by name when a file is opened).

Names are loaded on first use: ``memtrim run`` imports :mod:`memtrim.model.files`
without paying for the dataclasses of :mod:`memtrim.model.findings`.
"""

from __future__ import annotations

from typing import Any

_NAMES = {
    "METRICS": "findings",
    "Amount": "findings",
    "Finding": "findings",
    "Site": "findings",
    "relative_path": "findings",
    "FormatError": "files",
    "dump": "files",
    "dumps": "files",
    "load": "files",
    "loads": "files",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'memtrim.model' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"memtrim.model.{module}"), name)
    globals()[name] = value
    return value
