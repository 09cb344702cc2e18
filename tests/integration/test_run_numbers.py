"""`memtrim run`: live at the peak, still allocated at exit, allocated: exact bytes."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from memtrim.run import capture as capture_file

BYTEARRAY = 56 + 1  # object header and trailing NUL of bytearray(n)

PROGRAM = """
import sys
CACHE = []

def make_small():
    return [bytearray(1000) for _ in range(10000)]

def spike():
    x = bytearray(50 * 2**20)
    return len(x)

def main():
    keep = make_small()
    spike()
    CACHE.append(bytearray(3 * 2**20))
    return len(keep)

main()
"""


def run_json(runner, source, *options):
    script = runner.write(source)
    out = runner.tmp_path / "out.json"
    cap = runner.tmp_path / "out.memtrim"
    proc = runner.memtrim("run", "-q", "-o", str(cap), "--json", str(out), *options, str(script))
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), capture_file.read(str(cap))


def by_line(sites):
    return {(s["function"].split(".")[0], s["lineno"]): s for s in sites}


def line_of(source: str, text: str) -> int:
    """The line number of ``text`` in the dedented script (as written to disk)."""
    lines = textwrap.dedent(source).splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


@pytest.mark.parametrize("mode", [[], ["--exact"]])
def test_peak_at_exit_and_allocated_are_exact_per_line(runner, mode):
    data, _ = run_json(runner, PROGRAM, *mode)
    big = ("spike", line_of(PROGRAM, "x = bytearray"))
    peak = by_line(data["peak"]["sites"])
    assert peak[big]["bytes"] == 50 * 2**20 + BYTEARRAY
    assert peak[big]["count"] == 2
    # comprehension frames are named after their function ("make_small.<locals>...")
    small = peak[("make_small", line_of(PROGRAM, "bytearray(1000)"))]
    assert small["bytes"] - 10000 * (1000 + BYTEARRAY) in range(0, 100_000)  # + the list
    assert data["peak"]["sites"][0]["lineno"] == big[1]
    at_exit = by_line(data["at_exit"]["sites"])
    # the bytearray, and CACHE's item array (4 slots of 8 bytes) on the first append
    assert (
        at_exit[("main", line_of(PROGRAM, "CACHE.append"))]["bytes"] == 3 * 2**20 + BYTEARRAY + 32
    )
    assert big not in at_exit
    allocated = by_line(data["allocated"]["sites"])
    assert allocated[big]["bytes"] == 50 * 2**20 + BYTEARRAY
    # the process-wide peak covers both blocks alive together
    assert data["peak"]["bytes"] >= 50 * 2**20 + 10000 * (1000 + BYTEARRAY)
    assert data["peak"]["bytes"] - data["peak"]["attributed"] < 64 * 1024


def test_default_and_exact_modes_agree_on_lines(runner):
    default, _ = run_json(runner, PROGRAM)
    exact, _ = run_json(runner, PROGRAM, "--exact", "--force")
    for view in ("peak", "at_exit"):
        a = {(s["lineno"], s["bytes"]) for s in default[view]["sites"][:3]}
        b = {(s["lineno"], s["bytes"]) for s in exact[view]["sites"][:3]}
        assert a == b


@pytest.mark.parametrize("mode", [[], ["--exact"]])
def test_stacks_start_at_the_program(runner, mode):
    data, capture = run_json(runner, PROGRAM, *mode)
    top = data["peak"]["sites"][0]
    assert [f["function"] for f in top["stack"]] == ["<module>", "main", "spike"]
    used = {capture.frames[n.frame].filename for n in capture.stacks if n.frame >= 0}
    assert not [name for name in used if "/memtrim/" in name]  # the runner's frames are gone


def test_threads_are_attributed_per_thread(runner):
    data, capture = run_json(
        runner,
        """
        import threading
        keep = {}
        def worker(name, n):
            keep[name] = [bytearray(10000) for _ in range(n)]
        threads = [
            threading.Thread(target=worker, args=(f"w{i}", 100), name=f"w{i}") for i in range(2)
        ]
        for t in threads: t.start()
        for t in threads: t.join()
        """,
        "--exact",
    )
    site = data["at_exit"]["sites"][0]
    assert site["function"].startswith("worker")
    assert site["bytes"] >= 2 * 100 * (10000 + BYTEARRAY)
    assert [f["function"] for f in site["stack"]][:3] == [
        "Thread._bootstrap",
        "Thread._bootstrap_inner",
        "Thread.run",
    ]
    roots = {node.thread for node in capture.nodes if node.frame < 0}
    assert len(roots) == 3  # the main thread and two workers


def test_numpy_buffers(runner):
    pytest.importorskip("numpy")
    data, _ = run_json(
        runner,
        """
        import numpy as np
        def build():
            return np.ones(10**7)
        keep = build()
        """,
    )
    site = data["at_exit"]["sites"][0]
    # numpy's ones() is Python code: the line is numpy's, the stack shows ours
    assert site["function"] == "ones"
    assert "build" in [f["function"] for f in site["stack"]]
    assert 80_000_000 <= site["bytes"] <= 80_000_000 + 512


def test_sampled_stacks_estimate_the_big_sites(runner):
    _, capture = run_json(
        runner,
        """
        def many():
            return [bytearray(200) for _ in range(200000)]
        def few():
            return bytearray(30 * 2**20)
        a, b = many(), few()
        """,
        "--sample-bytes",
        "32K",
    )
    assert not capture.exact
    exact = {
        capture.frames[n.frame].function: n.at_exit.bytes for n in capture.nodes if n.frame >= 0
    }
    estimated: dict[str, int] = {}
    for node in capture.stacks:
        if node.frame >= 0:
            name = capture.frames[node.frame].function.split(".")[0]
            estimated[name] = estimated.get(name, 0) + node.at_exit.bytes
    true_many = sum(v for k, v in exact.items() if k.startswith("many"))
    assert abs(estimated["few"] - exact["few"]) / exact["few"] < 0.05
    # 53 MB of small blocks, one sampled per 32 KiB on average: about 1,600
    # samples, so the unbiased estimate's standard deviation is about 2.5 % (at the
    # default 256 KiB it is about 7 %, measured); 15 % is six of them
    assert abs(estimated["many"] - true_many) / true_many < 0.15


def test_capture_stays_small_for_a_long_allocation_heavy_run(runner):
    _, capture = run_json(
        runner,
        """
        import json
        blob = json.dumps([{"a": i, "b": [i] * 5, "c": str(i)} for i in range(2000)])
        for _ in range(200):
            json.loads(blob)
        """,
    )
    size = len(capture_file.dumps(capture))
    assert size < 1_000_000


SAMPLED = """
def small(n):
    return [bytearray(1000) for _ in range(n)]

def many():
    return [small(40) for _ in range(200)]

a = many()  # two callers: the line's exact bytes split between them by the samples
b = many()
"""


def _stacks(cap):
    capture = capture_file.read(str(cap))
    return capture.seed, [
        (node.parent, node.frame, node.view("peak").bytes, node.view("peak").count)
        for node in capture.stacks
    ]


def test_the_seed_replays_the_sampled_stacks(runner):
    script = runner.write(SAMPLED)
    seen = []
    for seed in ("7", "7", "8"):
        cap = runner.tmp_path / f"s{len(seen)}.memtrim"
        proc = runner.memtrim(
            "run", "-q", "-o", str(cap), "--sample-bytes", "64K", "--seed", seed, str(script)
        )
        assert proc.returncode == 0, proc.stderr
        seen.append(_stacks(cap))
    (seed_a, a), (seed_b, b), (seed_c, c) = seen
    assert (seed_a, seed_b, seed_c) == (7, 7, 8)
    assert a == b  # the same samples, to the byte
    assert a != c  # another seed samples other allocations
    unseeded = runner.tmp_path / "u.memtrim"
    assert runner.memtrim("run", "-q", "-o", str(unseeded), str(script)).returncode == 0
    assert isinstance(capture_file.read(str(unseeded)).seed, int)  # the random one, recorded


def _long_program(statements: int) -> str:
    """A module and a function far longer than a short code object's line lookup."""
    body = [f"K[{i}] = bytearray({100 + i})" for i in range(statements)]
    return "\n".join(
        ["K = [None] * 2 * " + str(statements), *body, "", "def f():"]
        + [f"    K[{statements + i}] = bytearray({100 + i})" for i in range(statements)]
        + ["", "f()", ""]
    )


@pytest.mark.parametrize("mode", [[], ["--exact"]])
def test_every_line_of_long_code_gets_its_own_bytes(runner, mode):
    # past 512 code units the lines come from a table built in one pass over
    # the line table (not PyCode_Addr2Line's scan from the start each time)
    n = 1500
    source = _long_program(n)
    data, _ = run_json(runner, source, "--json-sites", "0", *mode)
    at_exit = {(s["function"], s["lineno"]): s["bytes"] for s in data["at_exit"]["sites"]}
    for i in range(n):
        assert at_exit[("<module>", 2 + i)] == 100 + i + BYTEARRAY
        assert at_exit[("f", n + 4 + i)] == 100 + i + BYTEARRAY


FREE_LISTS = """
def make():
    t = [(i, -i, i * 2) for i in range(2000)]  # MAKE: freed into the tuples' free list
    del t

def use():
    return [(i, -i, i * 3) for i in range(2000)]  # USE: its tuples come from it

make()
keep = use()
pad = bytearray(10**6)  # the peak is now, with use()'s tuples alive
"""


@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.13+: CPython's reference tracer")
@pytest.mark.parametrize("mode", [[], ["--exact"]])
def test_objects_from_free_lists_are_charged_to_the_line_that_made_them(runner, mode):
    data, _ = run_json(runner, FREE_LISTS, *mode)
    make = ("make", line_of(FREE_LISTS, "# MAKE"))
    use = ("use", line_of(FREE_LISTS, "# USE"))
    for view in ("peak", "at_exit"):
        lines = by_line(data[view]["sites"])
        assert make not in lines, view  # it kept nothing (before: ~128 KB of tuples)
        # 2000 tuples of 3 (GC header 16 + 24 + 3 x 8 = 64 B each) and the list's items
        assert lines[use]["bytes"] >= 2000 * 64 + 2000 * 8, view
    # reusing a block is not allocating it: use() allocated its 5,651 ints (i
    # from 257, -i from 6, i * 3 from 86), its list's items and a few tuples
    # (about 2,000 blocks more if the reused ones counted)
    allocated = by_line(data["allocated"]["sites"])
    assert 5651 <= allocated[use]["count"] < 5651 + 200
