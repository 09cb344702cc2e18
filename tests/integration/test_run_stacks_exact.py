"""`memtrim run` (sampled mode): every stack total is the exact figure it is a part of."""

from __future__ import annotations

import json

from memtrim.run import capture as capture_file
from memtrim.run.capture import VIEWS, sites, stack_tree, stacks_at, view_total

BYTEARRAY = 56 + 1  # object header and trailing NUL of bytearray(n)
N = 1000
PROGRAM = """
KEEP = [None] * 40_000

def alloc(start, count):
    for i in range(start, start + count):
        KEEP[i] = bytearray(1000)

def from_a():
    alloc(0, 30_000)

def from_b():
    alloc(30_000, 10_000)

from_a()
from_b()
"""


def test_a_lines_stacks_sum_to_its_exact_bytes_and_the_graph_to_the_view(runner):
    script = runner.write(PROGRAM)
    cap = runner.tmp_path / "out.memtrim"
    out = runner.tmp_path / "out.json"
    proc = runner.memtrim("run", "-q", "-o", str(cap), "--json", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    capture = capture_file.read(str(cap))
    assert not capture.exact
    line = next(s for s in sites(capture, "at_exit") if s.frame.lineno == 6)
    assert line.bytes == 40_000 * (N + BYTEARRAY)  # exact: every block of the line
    found = stacks_at(capture, "at_exit", line.frame, limit=10)
    callers = {stack.stack[-2].function for stack in found}
    assert callers == {"from_a", "from_b"}  # 40 MB sampled every 256 KiB: both seen
    assert sum(stack.bytes for stack in found) == line.bytes  # the split adds up exactly
    for view in VIEWS:
        assert stack_tree(capture, view).total_bytes == view_total(capture, view)
    report = json.loads(out.read_text())
    assert report["peak"]["attributed"] == view_total(capture, "peak")
