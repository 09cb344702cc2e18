"""The SIGTERM dump's writer (calltree.c ``mt_tree_dump``) against ``calltree.snapshot()``:
the capture built from the dump has every line's figures of the capture built from the
snapshot taken just before (a subprocess: the dump freezes the recording for good)."""

from __future__ import annotations

import json

import pytest

PROGRAM = """\
import json, os, struct, sys, threading
from memtrim.engine import calltree, hooks, load
from memtrim.run import capture as capture_file
from memtrim.run import termdump
from memtrim.run.build import build

exact = sys.argv[2] == "exact"
handle = hooks.acquire("dump test")
calltree.start(exact, 0 if exact else 4096)
keep = [bytearray(1000 + i) for i in range(50)]  # line 10
tmp = [bytearray(5000) for _ in range(10)]
del tmp
def worker():
    global other
    other = [bytearray(300) for _ in range(20)]  # line 15
t = threading.Thread(target=worker, name="w")
t.start(); t.join(); import time; time.sleep(0.3)  # (its last frees come after join)
def nested(n):
    return [bytearray(n)] if n < 64 else nested(n // 2) + [bytearray(n)]  # line 19
deep = nested(4096)
import gc; gc.collect(); gc.disable()  # no collection between the two readings
f = open(sys.argv[1], "wb")
f.write(termdump.TERM_MAGIC + struct.pack("=4q", 0, 0, 2, 0) + b"{}")
f.flush()
fd, dump_to = f.fileno(), load().tree_dump
snap = calltree.snapshot()  # (uncounted) and right away:
ok = dump_to(fd)
f.close()
with open(sys.argv[1], "rb") as f:
    dump = termdump.read(f.read())

def figures(raw):
    capture = build(raw, meta={}, peak_bytes=0, peak_time=0.0, end_bytes=0,
                    timeline=[], thread_names={})
    out = {}
    for view in ("peak", "at_exit", "allocated"):
        for site in capture_file.sites(capture, view):
            key = f"{view} {os.path.basename(site.frame.filename)}:{site.frame.lineno}"
            got = out.setdefault(key, [0, 0])  # (3.11: a comprehension's own frame too)
            got[0] += site.bytes
            got[1] += site.count
    stacks = sorted(
        [capture.frames[n.frame].lineno if n.frame >= 0 else -1, n.thread, n.peak.bytes,
         n.at_exit.bytes, n.allocated.bytes]
        for n in capture.stacks
    )
    return out, stacks, capture.threads

print(json.dumps({"ok": ok, "snap": figures(snap), "dump": figures(dump.raw)}))
os._exit(0)  # the recording is frozen: nothing more to do with it
"""


@pytest.mark.parametrize("mode", ["default", "exact"])
def test_the_dump_has_the_figures_of_the_snapshot(runner, mode):
    script = runner.write(PROGRAM, "prog.py")
    proc = runner.python(str(script), str(runner.tmp_path / "dump.bin"), mode)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["ok"] is True
    snap, dump = found["snap"], found["dump"]
    assert dump == snap
    figures = snap[0]
    arrays = sum(56 + 1000 + i + 1 for i in range(50))  # bytearray(n): 56 + n + 1 bytes
    assert arrays <= figures["at_exit prog.py:10"][0] < arrays + 1000  # (and the list)
    assert figures["at_exit prog.py:15"][0] >= 20 * (56 + 300 + 1)
    assert figures["allocated prog.py:11"][0] >= 10 * (56 + 5000 + 1)
    assert "at_exit prog.py:11" not in figures  # freed
    assert len(snap[2]) == 2  # the main thread and the worker
