"""The program's own tracers, profilers and audit hooks work as without memtrim.

On Python 3.11 memtrim's line tracer is a C trace/profile function: it never
displaces the program's (a debugger, coverage, cProfile), skips the code that
runs while one is installed, and says so in one line on stderr. On 3.12+ the
tools use separate sys.monitoring ids and all see everything.
"""

from __future__ import annotations

import sys

import pytest

MONITORING = sys.version_info >= (3, 12)
FALLBACK = """
import builtins
profile = getattr(builtins, "profile", lambda f: f)
"""


def run_both(runner, source: str, *options: str, stdin: str | None = None):
    """The script under python, then under memtrim (tables to a file)."""
    runner.write(FALLBACK + source)
    plain = runner.python("script.py", stdin=stdin)
    profiled = runner.memtrim("-o", "tables.txt", *options, "script.py", stdin=stdin)
    tables = runner.tmp_path / "tables.txt"
    return plain, profiled, tables.read_text() if tables.exists() else ""


def assert_unmeasured_note(stderr: str, *names: str) -> None:
    """3.11: exactly one memtrim line, naming the functions; 3.12+: nothing."""
    if MONITORING:
        assert stderr == ""
        return
    assert stderr.count("\n") == 1 and stderr.startswith("memtrim: another tracer or profiler")
    assert f"calls of {', '.join(names)} were not measured" in stderr


TRACER = """
import sys
events = []

def tracer(frame, event, arg):
    if frame.f_code.co_name.startswith("t_"):
        events.append((event, frame.f_code.co_name, frame.f_lineno))
    return tracer

def t_helper(v):
    return v + 1

@profile
def t_prof(n):
    a = t_helper(n)
    return a

@profile
def t_sets(n):
    sys.settrace(tracer)  # as pdb.set_trace() does
    sys._getframe().f_trace = tracer
    x = t_helper(n)
    return t_helper(x)

def t_after():
    return 1

sys.settrace(tracer)
t_prof(1)
t_after()
sys.settrace(None)
print(events)
events.clear()
t_sets(1)
t_after()
print("still tracing:", sys.gettrace() is tracer)
sys.settrace(None)
print(events)
"""


def test_a_tracer_keeps_every_event_in_profiled_functions(runner):
    plain, proc, _ = run_both(runner, TRACER)
    assert proc.returncode == plain.returncode == 0, proc.stderr
    assert proc.stdout == plain.stdout
    assert "still tracing: True" in proc.stdout
    assert_unmeasured_note(proc.stderr, "t_prof", "t_sets")


def test_breakpoint_in_a_profiled_function_stops_there(runner):
    source = """
def helper(v):
    return v + 1

@profile
def prof(n):
    breakpoint()
    x = helper(n)
    return x + 1

print("result", prof(1))
"""
    plain, proc, _ = run_both(runner, source, stdin="p n\nc\n")
    assert plain.returncode == proc.returncode == 0, proc.stderr
    if sys.version_info < (3, 13):
        assert proc.stdout == plain.stdout
    # 3.13.0 stops on the breakpoint() line itself, but on the next one when any
    # sys.monitoring tool has events on the function (CPython's doing, not memtrim's)
    assert "prof()\n" in proc.stdout and "(Pdb) 1\n(Pdb) result 3\n" in proc.stdout
    assert_unmeasured_note(proc.stderr, "prof")


CPROFILE = """
import cProfile, pstats

def helper(i):
    return i * 2

@profile
def work(n):
    return sum([helper(i) for i in range(n)])

def calls(p):
    st = pstats.Stats(p)
    return sorted((k[2], v[1]) for k, v in st.stats.items() if k[2] in ("helper", "work"))

@profile
def inner_work(n):
    q = cProfile.Profile()
    q.enable()
    r = work(n)  # a profiled call while the program's profiler is on
    q.disable()
    return r, calls(q)

print(work(10))
print("inside:", inner_work(5))
print(work(3), sys.getprofile())
"""


def test_cprofile_enabled_inside_a_profiled_function_collects(runner):
    plain, proc, tables = run_both(runner, "import sys\n" + CPROFILE)
    assert proc.returncode == plain.returncode == 0, proc.stderr
    assert proc.stdout == plain.stdout
    assert "inside: (20, [('helper', 5), ('work', 1)])" in proc.stdout
    assert_unmeasured_note(proc.stderr, "work", "inner_work")
    row = next(line for line in tables.splitlines() if "return sum(" in line)
    # 3.11: the call made under cProfile is not counted; its figures are not shown
    assert row.split()[7] == ("3" if MONITORING else "2")


def test_a_thread_that_toggles_a_profiler_is_measured_again(runner):
    source = """
import sys, threading

def work(n):
    a = [0] * n
    return len(a)

def worker():
    for i in range(5):
        work(10)
    sys.setprofile(lambda *a: None)
    sys.setprofile(None)
    for i in range(5):
        work(10)

t = threading.Thread(target=worker)
t.start()
t.join()
print("done")
"""
    plain, proc, tables = run_both(runner, source, "-f", "work")
    assert proc.returncode == 0 and proc.stdout == plain.stdout, proc.stderr
    row = next(line for line in tables.splitlines() if "return len(a)" in line)
    assert row.split()[7] == "10"


AUDIT = """
import sys
seen = {}

def hook(event, args):
    if event in ("sys.settrace", "sys.setprofile"):
        seen[event] = seen.get(event, 0) + 1
        if RAISE:
            raise RuntimeError("tracing forbidden by policy")

sys.addaudithook(hook)

def helper(i):
    return i

@profile
def work(i):
    return helper(i) + helper(i)

for i in range(1000):
    work(i)
print(sorted(seen.items()))
"""


def test_audit_hooks_see_at_most_one_event_from_memtrim(runner):
    plain, proc, tables = run_both(runner, "RAISE = False\n" + AUDIT)
    assert proc.returncode == plain.returncode == 0, proc.stderr
    assert plain.stdout == "[]\n"
    # 3.11: memtrim's first installation of its profile function in the thread
    assert proc.stdout == ("[]\n" if MONITORING else "[('sys.setprofile', 1)]\n")
    assert proc.stderr == ""
    row = next(line for line in tables.splitlines() if "return helper(i)" in line)
    assert row.split()[7] == "1000"


def test_an_audit_hook_that_refuses_profiling(runner):
    plain, proc, tables = run_both(runner, "RAISE = True\n" + AUDIT)
    assert proc.returncode == plain.returncode == 0, proc.stderr
    assert "Exception ignored" not in proc.stderr
    if MONITORING:
        assert proc.stdout == plain.stdout
        assert proc.stderr == ""
    else:  # asked once, then memtrim stays out of the thread
        assert proc.stdout == "[('sys.setprofile', 1)]\n" and tables == ""
        assert proc.stderr == (
            "memtrim: an audit hook refused memtrim's profile function (sys.setprofile): "
            "calls of work were not measured\n"
        )


@pytest.mark.skipif(MONITORING, reason="3.12+: sys.monitoring tools never exclude each other")
def test_the_decorator_says_once_that_calls_were_not_measured(runner):
    script = runner.write(
        """
        import io, sys
        from memtrim import profile
        out = io.StringIO()

        @profile(stream=out)
        def work():
            return len(bytearray(1000))

        work()
        sys.settrace(lambda *a: None)
        work(); work()
        sys.settrace(None)
        work()
        print(out.getvalue().count("Filename:"))
        """
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2\n"  # no table for the calls that were not measured
    assert proc.stderr.count("memtrim: another tracer or profiler") == 1
    assert "calls of work were not measured" in proc.stderr
