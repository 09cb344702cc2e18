"""Read the dump the SIGTERM deadline writes when no Python code can write the capture.

When a SIGTERM comes while the thread holding the GIL is stuck in a long C
call, memtrim's Python side cannot run; the engine's deadline thread then
writes the call tree as it is (``mt_tree_dump`` in calltree.c, behind
term.c's header and the run's context), and execs a new Python in the process
that reads it here and builds the capture. The layout is the C code's: keep
the two in step.

File: ``MTTERM1\\0``, then int64 (dump time, signal time: monotonic ns;
the lengths of the context and of the thread names), both (JSON), then the
tree: ``MTDUMP1\\0``, the recording's settings and heap figures, the nodes,
their statistics, the code slots, the thread idents, the C frames'
addresses, and what threads without the GIL changed (their statistics,
pending leaves, queued frees); ``MTEND``.
"""

from __future__ import annotations

import json
import signal
import struct
from dataclasses import dataclass
from typing import Any

from memtrim.run.build import EntryTest, OwnFiles, build
from memtrim.run.capture import Capture
from memtrim.run.ondisk import TERM_REASON

TERM_MAGIC = b"MTTERM1\0"
TREE_MAGIC = b"MTDUMP1\0"
END_MAGIC = b"MTEND\0\0\0"
STAT_FIELDS = 10  # int64 each: as stat_tuple in calltree.c
STAT_SIZE = 8 * STAT_FIELDS
# how the C side's stat_t is laid out: 10 int64 and a uint64 epoch
C_STAT_SIZE = 88
# live_b, live_c, total_b, total_c, peak_b, peak_c, nlive_b, ntotal_b, npeak_b, hwm_b
LIVE_B, LIVE_C, NLIVE_B = 0, 1, 6


REASON = TERM_REASON  # what the disk keeper says of the same moment


class DumpError(ValueError):
    """The dump cannot be read (cut short, or not one)."""


@dataclass
class Dump:
    """What the deadline thread wrote: the tree as ``calltree.snapshot()`` gives it."""

    context: dict[str, Any]
    raw: dict[str, Any]  # as engine.calltree.snapshot() returns it
    level: int  # the heap's level and peak then (absolute, as hooks.level())
    peak: int
    dumped_ns: int  # monotonic
    signal_ns: int


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.at = 0

    def take(self, size: int) -> memoryview:
        if size < 0 or self.at + size > len(self.view):
            raise DumpError("the dump is cut short")
        part = self.view[self.at : self.at + size]
        self.at += size
        return part

    def i32(self) -> int:
        return int(struct.unpack("=i", self.take(4))[0])

    def i64(self) -> int:
        return int(struct.unpack("=q", self.take(8))[0])

    def count(self, limit: int = 1 << 28) -> int:
        n = self.i32()
        if not 0 <= n <= limit:
            raise DumpError(f"bad count {n} in the dump")
        return n

    def ints(self, n: int, width: int) -> list[int]:
        return self.take(n * width).cast("i" if width == 4 else "q").tolist()

    def stats(self, n: int) -> list[tuple[int, ...]]:
        flat = self.ints(n * STAT_FIELDS, 8)
        return [tuple(flat[k : k + STAT_FIELDS]) for k in range(0, len(flat), STAT_FIELDS)]

    def text(self) -> str:
        kind = self.i32()
        length = self.i64()
        if kind not in (1, 2, 4) or not 0 <= length < 1 << 24:
            raise DumpError("bad string in the dump")
        chars = self.take(kind * length)
        if kind == 1:
            return bytes(chars).decode("latin-1")
        return "".join(map(chr, chars.cast("H" if kind == 2 else "I")))


def read(data: bytes) -> Dump:
    """Parse a dump; :class:`DumpError` if it is not a whole one."""
    r = _Reader(data)
    if bytes(r.take(8)) != TERM_MAGIC:
        raise DumpError("not a memtrim SIGTERM dump")
    dumped_ns, signal_ns, context_len, names_len = r.i64(), r.i64(), r.i64(), r.i64()
    try:
        context = json.loads(bytes(r.take(context_len)))
        if names_len:
            context["threads"] = json.loads(bytes(r.take(names_len)))
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise DumpError(f"bad context in the dump: {exc}") from None
    if bytes(r.take(8)) != TREE_MAGIC:
        raise DumpError("no call tree in the dump")
    if r.i32() != C_STAT_SIZE:
        raise DumpError("the dump was written by another build of memtrim")
    exact, sample_bytes, full, level, peak = r.i32(), r.i64(), r.i64(), r.i64(), r.i64()
    n = r.count()
    flat = r.ints(3 * n, 4)
    nodes = [tuple(flat[k : k + 3]) for k in range(0, len(flat), 3)]
    stats = r.stats(n)
    sampled = r.stats(n) if r.i32() else None
    slots = [(r.text(), r.text(), r.i32()) for _ in range(r.count())]
    threads = [ident & (2**64 - 1) for ident in r.ints(r.count(), 8)]
    cframes = [("?", "", pc & (2**64 - 1)) for pc in r.ints(r.count(), 8)]
    nogil = r.stats(1)[0]
    pending = []
    for _ in range(r.count()):
        root, slot, line = r.i32(), r.i32(), r.i32()
        pending.append((root, slot, line, r.stats(1)[0]))
    native_threads = []
    for _ in range(r.count()):
        name = bytes(r.take(16)).split(b"\0", 1)[0].decode("utf-8", "replace")
        st = r.stats(1)[0]
        native_threads.append((name, st, r.i32(), r.i32()))
    queued = [tuple(r.ints(5, 8)) for _ in range(r.count())]
    if bytes(r.take(8)) != END_MAGIC:
        raise DumpError("the dump is cut short")
    raw = {
        "nodes": nodes,
        "slots": slots,
        "stats": stats,
        "sampled": sampled,
        "nogil": nogil,
        "native_threads": native_threads,
        "cframes": cframes,
        "threads": threads,
        "exact": exact,
        "sample_bytes": sample_bytes,
        "tree_full_blocks": full,
    }
    _fold(raw, pending, queued)
    return Dump(context, raw, level, peak, dumped_ns, signal_ns)


def _fold(raw: dict[str, Any], pending: list[Any], queued: list[Any]) -> None:
    """Apply what snapshot() would have: the queued frees of blocks made
    without the GIL come off their nodes' live figures (the figures at the
    peak stay: calltree.c's drain does the same), and each pending leaf (a
    line that allocated without the GIL) becomes a node under its thread."""
    stats = [list(s) for s in raw["stats"]]
    sampled = [list(s) for s in raw["sampled"]] if raw["sampled"] is not None else None
    nodes = raw["nodes"]
    for node, size, native, s_node, weight in queued:
        if 0 < node < len(stats):
            _take_off(stats[node], size, native)
        if sampled is not None and 0 <= s_node < len(sampled):
            _take_off(sampled[s_node], weight, native)
    nogil = list(raw["nogil"])
    for root, slot, line, st in pending:
        if 0 <= root < len(nodes) and 0 <= slot < len(raw["slots"]):
            nodes.append((root, slot, line))
            stats.append(list(st))
            if sampled is not None:
                sampled.append([0] * STAT_FIELDS)
        else:  # no node: shown with the blocks allocated without the GIL
            nogil = _added(nogil, st)
    raw["stats"] = [tuple(s) for s in stats]
    raw["sampled"] = [tuple(s) for s in sampled] if sampled is not None else None
    raw["nogil"] = tuple(nogil)


def _take_off(stat: list[int], size: int, native: int) -> None:
    stat[LIVE_B] -= size
    stat[LIVE_C] -= 1
    if native:
        stat[NLIVE_B] -= size


def _added(a: list[int], b: tuple[int, ...]) -> list[int]:
    out = [x + y for x, y in zip(a, b, strict=True)]
    out[-1] = max(a[-1], b[-1], out[LIVE_B])  # high-water marks: at least the larger
    return out


def capture_of(dump: Dump, own: OwnFiles, is_entry: EntryTest | None) -> Capture:
    """The capture of the moment the recording was dumped (the signal's)."""
    ctx = dump.context
    try:
        base, t0 = int(ctx["base"]), int(ctx["t0_ns"])
        timeline = [(float(t), int(heap), int(rss)) for t, heap, rss in ctx["timeline"]]
        names = {int(ident): list(seen) for ident, seen in (ctx.get("threads") or {}).items()}
        meta = dict(ctx["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DumpError(f"bad context in the dump: {exc!r}") from None
    at = max(dump.dumped_ns - t0, 0) / 1e9
    level, peak = max(dump.level - base, 0), max(dump.peak - base, 0)
    rss = timeline[-1][2] if timeline else 0
    timeline = [p for p in timeline if p[0] < at] + [(at, level, rss)]
    meta["duration"] = at
    meta["partial"] = {
        "reason": REASON,
        "time": round(at, 3),
        "peak": peak,
        "signal": round(max(dump.signal_ns - t0, 0) / 1e9, 3),
    }
    meta["exit"] = {"kind": "signal", "code": -signal.SIGTERM, "message": "SIGTERM"}
    if ctx.get("kept"):
        meta["kept_on_disk"] = int(ctx["kept"])
    main_ident = ctx.get("main_ident")

    def thread_name(ident: int, n: int) -> str:
        seen = names.get(ident, [])
        if n < len(seen):
            return str(seen[n])
        return "MainThread" if ident == main_ident else f"thread {ident}"

    return build(
        dump.raw,
        meta=meta,
        peak_bytes=peak,
        peak_time=max(timeline, key=lambda p: p[1])[0],
        end_bytes=level,
        timeline=timeline,
        thread_names=thread_name,
        is_entry=is_entry,
        own=own,
        root=str(ctx.get("root") or ""),
        sys_path=[str(p) for p in ctx.get("sys_path") or ()],
        seed=ctx.get("seed"),
    )
