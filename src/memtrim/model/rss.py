"""The RSS explained: parts that add up to the resident memory read at one moment.

Built from the facts :mod:`memtrim.engine.memory` reads (plain numbers), by
one pure function, :func:`breakdown`, so that it is tested on plain data.

The parts, each in bytes:

- ``python_objects``: live Python objects and their buffers (pymalloc's live
  blocks, all of them, plus Python's and numpy's blocks in malloc's heap
  counted by the hooks since they went in);
- ``pymalloc_free``: the rest of pymalloc's resident arenas: free blocks and
  pools, headers, rounding (an arena goes back to the system only when its
  last block is freed);
- ``native_malloc``: blocks C libraries have from malloc (native hooks), by
  calling library (the object the call came from) in ``libraries``;
- ``native_mmap``: the anonymous mappings C libraries made, resident part;
- ``malloc_free``: free space inside malloc's heap, not returned to the system;
- ``memtrim``: memtrim's own tables in malloc's heap (the hooks' shadow map);
- ``malloc_other``: malloc's other blocks in use: from before the hooks went
  in, or not seen by them, and malloc's bookkeeping (chunk headers, rounding:
  large for many tiny blocks);
- ``thread_stacks``, ``libraries`` (shared objects and the executable, with
  the pages written in them), ``files`` (other file mappings, shared memory,
  the kernel's pages);
- ``untouched`` (negative): the bytes of the parts above that sit in big
  blocks on pages never written, so not resident (calloc'd arrays, lists'
  spare capacity), measured with ``mincore`` on the blocks over 64 KiB;
- ``unaccounted``: the RSS minus all the above.

The allocation-based parts (Python objects, native, malloc's) count requested
bytes; the rest are resident bytes. Their sum is the RSS exactly, with
``unaccounted`` the difference, which is what to look at when it is large.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memtrim.model.units import human

if TYPE_CHECKING:
    from memtrim.model.findings import Finding

#: part key -> label, in the order they are shown
LABELS = {
    "python_objects": "Python objects (live)",
    "pymalloc_free": "free space in pymalloc's arenas",
    "native_malloc": "native heap in use (C libraries' malloc)",
    "native_mmap": "native anonymous mappings (resident)",
    "malloc_free": "free in malloc's heap, not returned to the system",
    "memtrim": "memtrim's own tables",
    "malloc_other": "malloc's other blocks and overhead",
    "thread_stacks": "thread stacks",
    "libraries": "shared libraries and the executable",
    "files": "other files, shared memory, kernel pages",
    "untouched": "of the above, allocated but never touched (not resident)",
    "unaccounted": "not accounted for",
}
POOL_SIZE = 16 << 10  # pymalloc's pools and arenas (3.11-3.13, 64-bit)
ARENA_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Part:
    """One part of the RSS: its key (see :data:`LABELS`), bytes and a note."""

    key: str
    bytes: int
    note: str = ""

    @property
    def label(self) -> str:
        """How reports name it."""
        return LABELS.get(self.key, self.key)


@dataclass(slots=True)
class RssBreakdown:
    """The RSS read at one moment (``rss``, bytes) and its parts, in order.

    ``when`` says which moment (``now``, ``peak``, ``at_exit``); ``facts`` are
    sentences a user can act on (arenas pinned by few blocks, malloc's free
    space that ``malloc_trim`` would return); ``notes`` what could not be read.
    """

    rss: int
    parts: list[Part]
    when: str = "now"
    facts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the native heap by calling library: ``(library file, live bytes)``, largest first
    libraries: list[tuple[str, int]] = field(default_factory=list)

    def part(self, key: str) -> int:
        """Bytes of one part (0 if absent)."""
        return sum(p.bytes for p in self.parts if p.key == key)

    def total(self) -> int:
        """The sum of the parts: the RSS."""
        return sum(p.bytes for p in self.parts)

    def rows(self) -> list[tuple[str, int, float, str]]:
        """``(label, bytes, share of the RSS, note)`` per part, for renderers."""
        whole = max(self.rss, 1)
        return [(p.label, p.bytes, p.bytes / whole, p.note) for p in self.parts]

    def findings(self) -> list[Finding]:
        """One finding per part (metric ``live``, named by the part's key)."""
        from memtrim.model.findings import Amount, Finding

        return [Finding("rss", None, "live", Amount(p.bytes, 0), name=p.key) for p in self.parts]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"rss", "when", "parts": {key: bytes}, "notes"...}``."""
        return {
            "rss": self.rss,
            "when": self.when,
            "parts": {p.key: p.bytes for p in self.parts},
            "part_notes": {p.key: p.note for p in self.parts if p.note},
            "facts": list(self.facts),
            "notes": list(self.notes),
            "native_libraries": [[name, size] for name, size in self.libraries],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RssBreakdown:
        """The inverse of :meth:`to_dict` (unknown keys kept as they are)."""
        notes = data.get("part_notes", {})
        return cls(
            rss=int(data["rss"]),
            parts=[Part(str(k), int(v), str(notes.get(k, ""))) for k, v in data["parts"].items()],
            when=str(data.get("when", "now")),
            facts=[str(f) for f in data.get("facts", [])],
            notes=[str(n) for n in data.get("notes", [])],
            libraries=[(str(n), int(b)) for n, b in data.get("native_libraries", [])],
        )


def breakdown(facts: dict[str, Any], when: str = "now") -> RssBreakdown:
    """The parts of the RSS from :func:`memtrim.engine.memory.read`'s facts."""
    notes: list[str] = []
    if not facts.get("have_maps"):
        return RssBreakdown(0, [], when, [], ["the process's mappings cannot be read here"])
    tracked = bool(facts.get("heap_installed"))
    if not tracked:
        notes.append("the allocator hooks were not in: malloc's blocks are not split by owner")
    elif not facts.get("native_installed"):
        notes.append("native tracking is off: C libraries' blocks are in malloc's other blocks")
    python_malloc = int(facts.get("python_malloc", 0))
    native_mapped = int(facts.get("native_mapped", 0))
    native_malloc = max(int(facts.get("native", 0)) - native_mapped, 0)
    parts: list[Part] = []
    if facts.get("have_pymalloc"):
        live_small = int(facts["pymalloc_allocated"])
        resident, note = _pymalloc_resident(facts)
        parts.append(Part("python_objects", live_small + python_malloc))
        parts.append(Part("pymalloc_free", max(resident - live_small, 0), note))
    else:
        notes.append("pymalloc is not the object allocator: its arenas are not told apart")
        parts.append(Part("python_objects", python_malloc))
    libraries = [(str(n), int(b)) for n, b in facts.get("native_libraries", []) if int(b) > 0]
    by_library = ", ".join(f"{os.path.basename(n)} {human(b)}" for n, b in libraries[:3])
    parts.append(Part("native_malloc", native_malloc, by_library))
    mapped_note = f"{human(native_mapped)} mapped" if native_mapped else ""
    parts.append(Part("native_mmap", int(facts.get("native_resident", 0)), mapped_note))
    if facts.get("have_malloc"):
        parts.append(Part("malloc_free", _malloc_free(facts)))
        in_use = int(facts["malloc_in_use"]) + int(facts["malloc_mmapped"])
        own = min(int(facts.get("own", 0)), max(in_use - python_malloc - native_malloc, 0))
        own_resident = min(int(facts.get("own_resident", own)), own)
        parts.append(Part("memtrim", own_resident))
        parts.append(Part("malloc_other", max(in_use - python_malloc - native_malloc - own, 0)))
    else:
        notes.append("glibc's mallinfo2 is not available: malloc's heap is not split")
    parts += [
        Part("thread_stacks", int(facts["stacks"])),
        Part("libraries", int(facts["libraries"])),
        Part("files", int(facts["files"])),
    ]
    if tracked:
        parts.append(Part("untouched", -int(facts.get("untouched", 0)), "blocks over 64 KiB"))
    rss = int(facts["rss"])
    rest = rss - sum(p.bytes for p in parts)
    rest_note = "" if rest >= 0 else "counted above but not resident: allocated, never touched"
    parts.append(Part("unaccounted", rest, rest_note))
    return RssBreakdown(rss, parts, when, _facts(facts), notes, libraries)


def _malloc_free(facts: dict[str, Any]) -> int:
    """The resident part of malloc's free space: its main heap's resident
    bytes (``[heap]``) plus its other arenas (taken as resident), minus the
    chunks in use; never more than what it holds free."""
    others = max(int(facts["malloc_arena"]) - int(facts.get("heap_size", 0)), 0)
    resident = int(facts.get("heap", 0)) + others - int(facts["malloc_in_use"])
    return max(min(resident, int(facts["malloc_free"])), 0)


def _pymalloc_resident(facts: dict[str, Any]) -> tuple[int, str]:
    """Resident bytes of all of pymalloc's arenas: measured (mincore) for the
    arenas the hooks saw allocated; for the others, their pools in use."""
    known = int(facts.get("arenas_known", 0))
    unknown = max(int(facts["pymalloc_arenas"]) - known, 0)
    measured = int(facts.get("arenas_resident", 0))
    if not unknown:
        return measured, ""
    pools = max(int(facts.get("pymalloc_pools", 0)) - int(facts.get("arenas_pools", 0)), 0)
    estimate = min(pools * POOL_SIZE, unknown * ARENA_SIZE)
    plural = "s" if unknown != 1 else ""
    return measured + estimate, f"estimated for {unknown} arena{plural} from before the hooks"


def _facts(facts: dict[str, Any]) -> list[str]:
    out = []
    pinned = int(facts.get("pinned_arenas", 0))
    if pinned:
        most = int(facts["pinned_most_blocks"])
        blocks = "1 live block" if most == 1 else f"at most {most:,} live blocks"
        out.append(
            f"{human(int(facts['pinned_free']))} sit free in {pinned} pymalloc "
            f"arena{'s' if pinned != 1 else ''} kept by {blocks} each: an arena goes "
            "back to the system only when all its blocks are freed"
        )
    free = _malloc_free(facts) if facts.get("have_malloc") else 0
    if free >= 1 << 20:
        out.append(
            f"malloc holds {human(free)} free, not returned to the system: "
            f"malloc_trim(0) would return up to that ({human(int(facts['malloc_releasable']))} "
            "of it at the top of the heap)"
        )
    return out
