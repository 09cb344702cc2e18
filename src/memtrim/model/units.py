"""Bytes as text, text as bytes, and data as text safe in a web page.

One function per distinct format, used by every reporter:

- :func:`human`: ``512 B``, ``1.5 KiB``, ``76.3 MiB``, ``2.0 GiB`` (summaries).
- :func:`mib`: always MiB with fixed decimals, ``76.3 MiB`` (timelines).
- :func:`mib_column`: memory_profiler's line-table column, right-aligned
  ``    76.294 MiB``, never ``-0.000``.
- :func:`parse_size`: ``512M``, ``2GiB``, ``1.5g`` -> bytes.
- :func:`script_json`: JSON that can sit in a ``<script>`` element.
"""

from __future__ import annotations

import json
import re
from typing import Any

KIB = 2**10
MIB = 2**20
GIB = 2**30

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_UNSAFE_IN_SCRIPT = re.compile("[<>&\u2028\u2029\ud800-\udfff]")


def human(n: float) -> str:
    """Bytes as B / KiB / MiB / GiB: whole bytes, else one decimal."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - the loop always returns


def to_mib(value: float) -> float:
    """Bytes to MiB (memory_profiler's unit)."""
    return value / MIB


def mib(value: float, decimals: int = 1) -> str:
    """Bytes as MiB with ``decimals`` decimals: ``76.3 MiB``."""
    return f"{value / MIB:.{decimals}f} MiB"


def mib_column(value: int, precision: int) -> str:
    """Bytes as memory_profiler's line table shows them: ``76.294 MiB``, the
    number right-aligned in ``precision + 4`` characters.

    A value that rounds to zero prints as ``0.000``, never ``-0.000``.
    """
    rounded = round(value / MIB, precision)
    return f"{rounded + 0.0 if rounded else 0.0:{precision + 4}.{precision}f} MiB"


def parse_size(text: str, zero: bool = False) -> int:
    """``512M``, ``2GiB``, ``1.5g``, ``1000000`` -> bytes (binary units).

    Raises :class:`ValueError` for text that is no size, or not positive
    (``zero``: 0 is allowed).
    """
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"invalid size {text!r}: use e.g. 512M or 2G")
    number, unit = match.groups()
    value = int(float(number) * _UNITS[(unit or "").lower()[:1]])
    if value < 0 or (value == 0 and not zero):
        raise ValueError(f"invalid size {text!r}: must be positive")
    return value


def script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element.

    ``<``, ``>`` and ``&`` (no ``</script>`` or ``<!--``), U+2028/2029 and lone
    surrogates (which UTF-8 cannot encode) become ``\\uXXXX`` escapes; JSON
    emits these characters only inside strings, so the data is unchanged.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _UNSAFE_IN_SCRIPT.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
