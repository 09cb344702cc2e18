"""memory_profiler users' code runs unchanged under memtrim (issue 15).

Scripts shaped like memory_profiler's own tests, run in subprocesses: the
``profile`` builtin of ``python -m memtrim`` is a profiler object (decorator,
``enable_by_count``, ``with profile:``, ``code_map``, ``runctx``),
memtrim's ``LineProfiler`` has memory_profiler's ``code_map``/``runctx``/
context manager, the imported ``profile``/``show_results`` print 1 decimal,
``-o`` appends, and ``memtrim record`` gives ``@profile`` scripts their builtin.
"""

from __future__ import annotations

import json
import re

import pytest

from memtrim.timeline import recording

MIB = 2**20


def _row(text: str, source: str) -> list[str]:
    """The MiB figures (mem usage, increment, peak) of the row showing ``source``."""
    for line in text.splitlines():
        if line.rstrip().endswith(source) and re.match(r"\s*\d+\s+\S", line):
            return re.findall(r"(-?\d+\.\d+) MiB", line)
    raise AssertionError(f"no row for {source!r} in:\n{text}")


def test_builtin_profile_supports_with_and_enable_by_count(runner):
    # memory_profiler's test_gen.py (`with profile:`) and test_nested.py
    # (`profile.enable_by_count()`), with exactly known allocations.
    script = runner.write(
        """
        @profile
        def gen():
            a = bytearray(2 * 2**20)
            yield a

        @profile
        def plain():
            return bytearray(3 * 2**20)

        with profile as p:
            keep = next(gen())
        print("same", p is profile)
        profile.enable_by_count()
        keep2 = plain()
        profile.disable_by_count()
        profile.disable_by_count()  # one too many: nothing happens, as in memory_profiler
        """
    )
    proc = runner.memtrim(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("same True\n")
    assert _row(proc.stdout, "a = bytearray(2 * 2**20)")[1] == "2.000"
    assert _row(proc.stdout, "return bytearray(3 * 2**20)")[1] == "3.000"


def test_builtin_profile_add_function_code_map_runctx_show_results(runner):
    script = runner.write(
        """
        import io

        def work():
            data = bytearray(5 * 2**20)
            return data

        profile.add_function(work)
        ns = {"work": work}
        assert profile.runctx("keep = work()", ns, ns) is profile
        lines = profile.code_map[work.__code__]
        inc, mem, occ = lines[work.__code__.co_firstlineno + 1]
        print("code_map", round(inc, 3), occ, mem >= inc)
        buf = io.StringIO()
        profile.show_results(buf)
        print("shown", buf.getvalue().count("Filename:"))
        """
    )
    proc = runner.memtrim("--precision", "2", str(script))
    assert proc.returncode == 0, proc.stderr
    assert "code_map 5.0 1 True\n" in proc.stdout
    assert "shown 1\n" in proc.stdout
    # the table at the end, with --precision's decimals
    assert _row(proc.stdout, "data = bytearray(5 * 2**20)")[1] == "5.00"


LINE_PROFILER = """
from memtrim import LineProfiler, show_results
import io
import re
import sys

def some_loop():
    for i in range(12):
        a = 1

def alloc():
    keep = bytearray(4 * 2**20)
    del keep

prof = LineProfiler()
prof(some_loop)()
{use}
values = list(list(prof.code_map.values())[0].values())
print("loop", values[-2][2], values[-1][2])
alloc_lines = prof.code_map[alloc.__code__]
made = alloc_lines[alloc.__code__.co_firstlineno + 1]
freed = alloc_lines[alloc.__code__.co_firstlineno + 2]
size = sys.getsizeof(bytearray(4 * 2**20))  # the object and its buffer, in bytes
print("alloc", round(made[0] * 2**20) - size, round(freed[0] * 2**20) + size, made[2], freed[2])
items = [(name.endswith(".py"), [n for n, d in rows if d]) for name, rows in prof.code_map.items()]
print("items", len(items), items[0][0])
buf = io.StringIO()
show_results(prof, buf)
figures = re.findall(r"\\.(\\d+) MiB", buf.getvalue())
print("decimals", sorted({{len(x) for x in figures}}))
"""


@pytest.mark.parametrize(
    "use",
    [
        "prof.add_function(alloc)\nwith prof:\n    alloc()",  # the context manager
        "prof.add_function(alloc)\nassert prof.runctx('alloc()', globals(), None) is prof",
        "prof(alloc)()",
    ],
)
def test_line_profiler_code_map_as_memory_profiler(runner, use):
    # memory_profiler's test_increment_display.py reads code_map this way.
    script = runner.write(LINE_PROFILER.format(use=use))
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert "loop 13 12\n" in proc.stdout
    # the bytearray's exact size made, then freed (code_map holds MiB)
    assert "alloc 0 0 1 1\n" in proc.stdout
    assert "items 2 True\n" in proc.stdout
    assert "decimals [1]\n" in proc.stdout  # show_results: memory_profiler's precision=1


def test_imported_profile_prints_one_decimal_like_memory_profiler(runner):
    script = runner.write(
        """
        from memtrim import profile

        @profile
        def f():
            return bytearray(3 * 2**20)

        keep = f()
        """
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    figures = _row(proc.stdout, "return bytearray(3 * 2**20)")
    assert figures[1:] == ["3.0", "3.0"]
    decimals = {len(x) for x in re.findall(r"\.(\d+) MiB", proc.stdout)}
    assert decimals == {1}


def test_output_file_is_appended_to(runner):
    script = runner.write(
        """
        @profile
        def f():
            return bytearray(2**20)
        keep = f()
        """
    )
    out = runner.tmp_path / "tables.txt"
    out.write_text("earlier results\n")
    for _ in range(2):
        proc = runner.memtrim("-o", str(out), str(script))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
    text = out.read_text()
    assert text.startswith("earlier results\nFilename: ")
    assert text.count("Filename:") == 2
    assert text.count("return bytearray(2**20)") == 2


# ------------------------------------------------------------- memtrim record


MPROF_SCRIPT = """
import time

@profile
def test1():
    a = bytearray(8 * 2**20)
    time.sleep(0.3)
    return a

@profile
def test2(l):
    b = bytearray(len(l))
    time.sleep(0.3)
    del b

if __name__ == "__main__":
    l = test1()
    test2(l)
    test2(l)
    print("done", test1.__name__)
"""


def test_record_gives_profile_builtin_and_marks_each_call(runner):
    # memory_profiler's test_mprofile.py, which `mprof run` handles.
    script = runner.write(MPROF_SCRIPT)
    out = runner.tmp_path / "rec.mtrec"
    proc = runner.python(
        "-m", "memtrim", "record", "--interval", "0.05", "-o", str(out), str(script)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "done test1\n"
    timeline = recording.load(str(out))
    calls = [(p.name, p.increment, p.peak_heap) for p in timeline.phases]
    assert [name for name, *_ in calls] == ["test1", "test2", "test2"]
    # exact heap figures of each call: test1 keeps its bytearray, test2 frees its
    # own (the calls' frames and the interpreter's bookkeeping: under 1 KiB)
    size = 8 * MIB + 57  # sys.getsizeof(bytearray(8 * 2**20)) on 64-bit CPython
    _, inc1, peak1 = calls[0]
    assert size <= inc1 <= size + 1024 and size <= peak1 <= size + 1024
    for _, inc, peak in calls[1:]:
        assert abs(inc) <= 1024 and size <= peak <= size + 1024
    for p in timeline.phases:
        assert p.duration >= 0.29
    starts = [p.start for p in timeline.phases]
    assert starts == sorted(starts)


def test_record_profile_builtin_with_options_and_in_a_block(runner):
    script = runner.write(
        """
        @profile(precision=2)
        def f():
            return bytearray(2**20)

        with profile:
            keep = f()
        profile.enable_by_count()
        profile.disable_by_count()
        """
    )
    out = runner.tmp_path / "rec.mtrec"
    proc = runner.python("-m", "memtrim", "record", "-q", "-o", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in recording.load(str(out)).phases] == ["f"]


def test_plot_draws_the_calls_of_profiled_functions(runner):
    pytest.importorskip("matplotlib")
    script = runner.write(MPROF_SCRIPT)
    out = runner.tmp_path / "rec.mtrec"
    proc = runner.python("-m", "memtrim", "record", "-q", "-o", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    page = runner.tmp_path / "rec.html"
    proc = runner.python("-m", "memtrim", "plot", "-q", "-o", str(page), str(out))
    assert proc.returncode == 0, proc.stderr
    data = page.read_text()
    found = re.search(r'<script type="application/json"[^>]*>(.*?)</script>', data, re.S)
    assert found is not None
    phases = json.loads(found.group(1))["summary"]["phases"]
    assert [p["name"] for p in phases] == ["test1", "test2", "test2"]
    assert data.count("<tr><td>test2</td>") == 2  # the page's table of the calls
