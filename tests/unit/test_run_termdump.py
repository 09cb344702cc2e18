"""Reading the SIGTERM dump (run/termdump.py) on plain bytes laid out as calltree.c
and term.c write them; the integration tests run the real writer."""

from __future__ import annotations

import json
import signal
import struct

import pytest

from memtrim.run import capture as capture_file
from memtrim.run import termdump
from memtrim.run.build import OwnFiles

# a node's stats: live_b, live_c, total_b, total_c, peak_b, peak_c, nlive_b, ntotal_b,
# npeak_b, hwm_b
ZERO = (0,) * 10


def _stat(live, count, peak=None, total=None):
    peak = live if peak is None else peak
    total = live if total is None else total
    return (live, count, total, count, peak, count, 0, 0, 0, max(live, peak))


def _text(s):
    width = max((1 if ord(c) < 256 else 2 if ord(c) < 65536 else 4) for c in s) if s else 1
    fmt = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[width]
    return struct.pack("=iq", width, len(s)) + s.encode(fmt)


def _stats(rows):
    return b"".join(struct.pack("=10q", *row) for row in rows)


def encode(
    context,
    *,
    names=None,
    nodes=(),
    stats=(),
    sampled=None,
    slots=(),
    threads=(),
    cframes=(),
    nogil=ZERO,
    pending=(),
    foreign=(),
    queued=(),
    level=0,
    peak=0,
    exact=0,
    dumped_ns=3_000_000_000,
    signal_ns=2_000_000_000,
):
    ctx = json.dumps(context).encode()
    names_blob = json.dumps(names).encode() if names is not None else b""
    out = [termdump.TERM_MAGIC, struct.pack("=4q", dumped_ns, signal_ns, len(ctx), len(names_blob))]
    out += [ctx, names_blob, termdump.TREE_MAGIC, struct.pack("=i", termdump.C_STAT_SIZE)]
    out.append(struct.pack("=iqqqq", exact, 0 if exact else 512 * 1024, 0, level, peak))
    out.append(struct.pack("=i", len(nodes)))
    out += [struct.pack("=3i", *n) for n in nodes]
    out.append(_stats(stats))
    out.append(struct.pack("=i", sampled is not None))
    out.append(_stats(sampled or ()))
    out.append(struct.pack("=i", len(slots)))
    out += [_text(f) + _text(q) + struct.pack("=i", first) for f, q, first in slots]
    out.append(struct.pack("=i", len(threads)) + b"".join(struct.pack("=q", t) for t in threads))
    out.append(struct.pack("=i", len(cframes)) + b"".join(struct.pack("=q", pc) for pc in cframes))
    out.append(_stats([nogil]))
    out.append(struct.pack("=i", len(pending)))
    out += [struct.pack("=3i", root, slot, line) + _stats([st]) for root, slot, line, st in pending]
    out.append(struct.pack("=i", len(foreign)))
    for name, st, origin_slot, origin_line in foreign:
        out.append(name.encode().ljust(16, b"\0") + _stats([st]))
        out.append(struct.pack("=2i", origin_slot, origin_line))
    out.append(struct.pack("=i", len(queued)) + b"".join(struct.pack("=5q", *q) for q in queued))
    out.append(termdump.END_MAGIC)
    return b"".join(out)


PROG = "/src/prog.py"
CONTEXT = {
    "meta": {"memtrim": "x", "python": "3", "pid": 7, "started": 1.0, "interval": 0.01},
    "t0_ns": 1_000_000_000,
    "base": 1000,
    "root": "/src",
    "sys_path": ["/src"],
    "seed": 5,
    "timeline": [[0.0, 0, 100], [0.5, 4000, 200]],
    "kept": 2,
}
# node 0: not attributed; 1: the main thread's root; 2: prog.py line 3; 3: line 9 below it
NODES = [(-1, -1, 0), (-1, -1, 0), (1, 0, 3), (2, 1, 9)]
SLOTS = [(PROG, "<module>", 1), (PROG, "función_𝔣", 8)]


def test_the_tree_is_read_as_snapshot_gives_it():
    stats = [ZERO, ZERO, _stat(4000, 2), _stat(500, 1, peak=700)]
    data = encode(
        CONTEXT,
        nodes=NODES,
        stats=stats,
        slots=SLOTS,
        threads=[140_000_000_000_001],
        cframes=[0x7F0012345678],
        foreign=[("blas-worker", _stat(64, 1), 0, 3)],
        level=5500,
        peak=6000,
    )
    dump = termdump.read(data)
    raw = dump.raw
    assert raw["nodes"] == NODES
    assert raw["slots"] == SLOTS  # latin-1, two- and four-byte characters
    assert raw["stats"] == stats
    assert raw["sampled"] is None and raw["exact"] == 0 and raw["sample_bytes"] == 512 * 1024
    assert raw["threads"] == [140_000_000_000_001]
    assert raw["cframes"] == [("?", "", 0x7F0012345678)]
    assert raw["native_threads"] == [("blas-worker", _stat(64, 1), 0, 3)]
    assert (dump.level, dump.peak) == (5500, 6000)
    assert dump.context["seed"] == 5


def test_queued_frees_come_off_live_only_and_pending_leaves_become_nodes():
    stats = [ZERO, ZERO, _stat(4000, 2), _stat(500, 1, peak=700)]
    sampled = [ZERO, ZERO, _stat(4000, 2), _stat(512, 1)]
    data = encode(
        CONTEXT,
        nodes=NODES,
        stats=stats,
        sampled=sampled,
        slots=SLOTS,
        # (node, size, native, sampled node, its weight): a free made without the GIL
        queued=[(2, 1000, 0, 3, 512)],
        # a line that allocated without the GIL; then one whose thread is unknown
        pending=[(1, 1, 10, _stat(300, 3)), (99, 0, 4, _stat(40, 1))],
        nogil=_stat(8, 1),
    )
    raw = termdump.read(data).raw
    live_b, live_c, _, _, peak_b, *_ = raw["stats"][2]
    assert (live_b, live_c, peak_b) == (3000, 1, 4000)  # the peak saw it live
    assert raw["sampled"][3][0] == 0
    assert raw["nodes"][-1] == (1, 1, 10) and raw["stats"][-1] == _stat(300, 3)
    assert len(raw["sampled"]) == len(raw["nodes"])
    assert raw["nogil"][0] == 48 and raw["nogil"][1] == 2


@pytest.mark.parametrize("cut", [0, 7, 8, 30, 60, 100, -9, -1])
def test_a_dump_cut_short_is_refused(cut):
    data = encode(CONTEXT, nodes=NODES, stats=[ZERO] * 4, slots=SLOTS)
    with pytest.raises(termdump.DumpError):
        termdump.read(data[:cut])


def test_other_bytes_are_refused():
    with pytest.raises(termdump.DumpError, match="not a memtrim SIGTERM dump"):
        termdump.read(b"MTCAPTURE and more bytes than that")
    data = bytearray(encode(CONTEXT, nodes=NODES, stats=[ZERO] * 4, slots=SLOTS))
    at = data.index(termdump.TREE_MAGIC) + 8
    data[at : at + 4] = struct.pack("=i", 80)  # another build's stat_t
    with pytest.raises(termdump.DumpError, match="another build"):
        termdump.read(bytes(data))
    with pytest.raises(termdump.DumpError, match="bad context"):
        termdump.read(encode(CONTEXT, names=None)[:48] + b"{not json" + b"\0" * 40)


def test_the_capture_is_the_moment_of_the_dump():
    stats = [ZERO, ZERO, _stat(4000, 2), _stat(500, 1, peak=700)]
    names = {"140000000000001": ["MainThread"]}
    data = encode(
        CONTEXT,
        names=names,
        nodes=NODES,
        stats=stats,
        slots=SLOTS,
        threads=[140_000_000_000_001],
        level=1000 + 4500,
        peak=1000 + 4700,
        exact=1,
    )
    capture = termdump.capture_of(termdump.read(data), OwnFiles(package="/memtrim/"), None)
    at_exit = {s.frame.lineno: s.bytes for s in capture_file.sites(capture, "at_exit")}
    assert at_exit == {3: 4000, 9: 500}
    assert (capture.peak_bytes, capture.end_bytes) == (4700, 4500)  # less the base
    assert capture.meta["duration"] == 2.0  # dumped 2 s after the start
    assert capture.meta["partial"] == {
        "reason": termdump.REASON,
        "time": 2.0,
        "peak": 4700,
        "signal": 1.0,
    }
    assert capture.meta["exit"]["code"] == -signal.SIGTERM
    assert capture.meta["kept_on_disk"] == 2
    assert capture.threads == ["MainThread"]
    assert capture.timeline[-1] == (2.0, 4500, 200)  # the dump's point closes it
    assert capture.seed == 5 and capture.root == "/src"


def test_without_thread_names_threads_are_named_by_ident():
    stats = [ZERO, ZERO, _stat(4000, 2), ZERO]
    data = encode(CONTEXT, nodes=NODES, stats=stats, slots=SLOTS, threads=[77])
    capture = termdump.capture_of(termdump.read(data), OwnFiles(package="/memtrim/"), None)
    assert capture.threads == ["thread 77"]
    assert {s.frame.lineno: s.bytes for s in capture_file.sites(capture, "at_exit")} == {3: 4000}
