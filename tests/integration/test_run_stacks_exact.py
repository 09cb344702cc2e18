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


GAPS = """
KEEP = [None] * (1 << 17)
POS = [0]

def a(n):
    if n == 0:
        KEEP[POS[0]] = bytearray(100)
        POS[0] += 1
        return
    b(n - 1)
    b(n - 1)

def b(n):
    if n == 0:
        KEEP[POS[0]] = bytearray(100)
        POS[0] += 1
        return
    a(n - 1)
    a(n - 1)

a(17)
"""


def test_a_full_call_tree_says_so_and_never_invents_a_caller(runner):
    """2**17 distinct stacks (a and b call each other from two lines each):
    more nodes than the exact tree keeps whole."""
    script = runner.write(GAPS)
    cap = runner.tmp_path / "out.memtrim"
    proc = runner.memtrim("run", "--exact", "-o", str(cap), str(script))
    assert proc.returncode == 0, proc.stderr
    assert "the call tree was full" in " ".join(proc.stderr.split())
    capture = capture_file.read(str(cap))
    gaps = capture.meta["stack_gaps"]
    assert 0 < gaps["at_exit"][0] < view_total(capture, "at_exit")
    # per line, still exact: 2**17 bytearray(100)s, two blocks each
    line = next(s for s in sites(capture, "at_exit") if s.frame.lineno == 15)
    assert (line.bytes, line.count) == (2**17 * (100 + BYTEARRAY), 2**18)
    # a stack goes <module> -> a -> b -> a ...; where frames were left out it
    # says so, never showing one function calling another it did not call
    gap_seen = False
    for node in capture.stacks:
        if node.frame < 0 or node.parent < 0 or capture.stacks[node.parent].frame < 0:
            continue
        parent = capture.frames[capture.stacks[node.parent].frame].function
        child = capture.frames[node.frame].function
        if "frames left out" in parent:
            gap_seen = True
            continue
        allowed = {"<module>": {"a"}, "a": {"b"}, "b": {"a"}}.get(parent, set())
        assert child in allowed | {"(frames left out: call tree full)"}, (parent, child)
    assert gap_seen
