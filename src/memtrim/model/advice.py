"""Advice: one concrete change to the program, with the bytes it saves.

An :class:`Advice` is plain data (strings, integers, lists of strings), so
that the run report, the JSON file and the terminal table are all built from
the same records, and a saved capture carries them. Bytes are integers:
``bytes`` is what the objects take now (what deleting them would free),
``after`` what the alternative takes, built from the same data, and
``saving`` their difference.

``measured`` says how the figure was obtained: ``"all"`` (the alternative
was built, or its layout computed, from every object), ``"sample"`` (from a
random sample; ``error`` is then the bound of the estimate, a fraction) or
``"computed"`` (from a formula: a Bloom filter's size, a bounded cache).
``confidence`` says what the change does to the program: ``"exact"`` (same
results; checked on the data), ``"review"`` (the saving is right, whether the
code allows the change cannot be checked at run time) or ``"changes
results"`` (an approximate structure, a loss of precision).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

#: The kinds of advice, by rule (``docs/advice.md`` has one section each).
KINDS = (
    "array",
    "slots",
    "intern",
    "records",
    "generator",
    "mmap",
    "dtype",
    "trie",
    "bloom",
    "hll",
    "leak",
    "cache",
)
MEASURED = ("all", "sample", "computed")
CONFIDENCE = ("exact", "review", "changes results")
#: Advice that saves less than this is not shown (an option everywhere).
DEFAULT_THRESHOLD = 1024 * 1024


@dataclass
class Advice:
    """One change, where to make it, and what it saves (see the module doc)."""

    kind: str
    filename: str
    lineno: int
    source: str
    type: str
    count: int
    bytes: int
    after: int
    fix: str
    caveats: list[str] = field(default_factory=list)
    measured: str = "all"
    holder: list[str] = field(default_factory=list)
    confidence: str = "review"
    qualname: str = ""
    when: str = "exit"
    error: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown advice kind {self.kind!r}")
        if self.measured not in MEASURED:
            raise ValueError(f"unknown measure {self.measured!r}")
        if self.confidence not in CONFIDENCE:
            raise ValueError(f"unknown confidence {self.confidence!r}")
        self.bytes = int(self.bytes)
        self.after = min(int(self.after), self.bytes)

    @property
    def saving(self) -> int:
        """Bytes the change frees: ``bytes - after``."""
        return self.bytes - self.after

    @property
    def key(self) -> tuple[str, str, int, str]:
        """Equal advice (one entry per site and kind, and type)."""
        return (self.kind, self.filename, self.lineno, self.type)

    def where(self) -> str:
        """``file:line`` or, with no line known, the first holder."""
        if self.filename:
            return f"{self.filename}:{self.lineno}"
        return self.holder[0] if self.holder else "(line not known)"

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``saving`` included)."""
        out = asdict(self)
        out["saving"] = self.saving
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Advice:
        """The record back from :meth:`to_dict` (``saving`` is recomputed)."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


def check_threshold(threshold: Any) -> int:
    """A threshold in bytes, or a clear TypeError/ValueError."""
    if not isinstance(threshold, int) or isinstance(threshold, bool):
        raise TypeError(f"threshold must be an int (bytes), not {type(threshold).__name__}")
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, not {threshold}")
    return threshold


def merge(groups: Iterable[Iterable[Advice]]) -> list[Advice]:
    """Advice from several walks (the peak's, the exit's), one per key: the
    one that saves most."""
    best: dict[tuple[str, str, int, str], Advice] = {}
    for group in groups:
        for item in group:
            kept = best.get(item.key)
            if kept is None or item.saving > kept.saving:
                best[item.key] = item
    return list(best.values())


def ranked(advice: Iterable[Advice], threshold: int = DEFAULT_THRESHOLD) -> list[Advice]:
    """Largest saving first, nothing under ``threshold`` bytes."""
    kept = [a for a in advice if a.saving >= threshold and a.saving > 0]
    kept.sort(key=lambda a: (-a.saving, a.kind, a.filename, a.lineno))
    return kept


_FIELD_TYPES = {
    "kind": str,
    "filename": str,
    "lineno": int,
    "source": str,
    "type": str,
    "count": int,
    "bytes": int,
    "after": int,
    "fix": str,
    "measured": str,
    "confidence": str,
    "qualname": str,
    "when": str,
}


def parse_records(data: Any) -> list[Advice]:
    """Advice from JSON records (a capture's ``meta["advice"]``), checked field by
    field: a ValueError names the first bad one (a crafted or damaged file)."""
    if not isinstance(data, list):
        raise ValueError("'advice' is not a list")
    out = []
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise ValueError(f"advice {index} is not an object")
        for name, kind in _FIELD_TYPES.items():
            value = record.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValueError(f"advice {index}: {name!r} is not a {kind.__name__}")
        for name in ("caveats", "holder"):
            value = record.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"advice {index}: {name!r} is not a list of strings")
        try:
            out.append(Advice.from_dict(record))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"advice {index}: {exc}") from None
    return out
