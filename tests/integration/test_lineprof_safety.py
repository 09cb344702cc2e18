"""The line profiler never crashes the program and never shows a wrong first row.

Deep recursion through the C wrapper, the function attributes seen through it,
and the "pending call" marker that closes a call's record when its frame
releases its locals (a locals() dict, other monitoring tools).
"""

from __future__ import annotations

import sys

import pytest

from tests.integration.test_lineprof_numbers import BYTEARRAY, FIRST_RUN_NOISE

MONITORING = sys.version_info >= (3, 12)
GUARD_MESSAGE = "memtrim's @profile wrapper uses the C stack"

# memtrim.profile: the C wrapper on every version, tables to a buffer.
API = """
import io
from memtrim import profile as _profile
TABLES = io.StringIO()
def profile(f):
    return _profile(f, stream=TABLES, precision=3)
"""

FALLBACK = """
import builtins
profile = getattr(builtins, "profile", lambda f: f)
"""

RECURSION = """
import sys, threading

@profile
def rec(n):
    return 0 if n == 0 else rec(n - 1) + 1

def attempt(n):
    try:
        return rec(n)
    except RecursionError as exc:
        return "RecursionError: " + str(exc)

out = []
threading.stack_size(256 * 1024)
t = threading.Thread(target=lambda: out.append(attempt(900)))
t.start(); t.join()
print("thread", out[0])
sys.setrecursionlimit(100000)
print("main", attempt(30000))
"""


def test_deep_recursion_through_the_wrapper_raises_instead_of_crashing(runner):
    script = runner.write(API + RECURSION)
    proc = runner.python(str(script), timeout=300)
    assert proc.returncode == 0, proc.stderr  # not SIGSEGV
    thread, main = proc.stdout.splitlines()
    # a 256 KiB thread stack holds ~300 levels of C calls
    assert thread.startswith("thread RecursionError: maximum recursion depth exceeded")
    assert GUARD_MESSAGE in thread
    # 8 MiB: memtrim's guard on 3.11 (~14,000 levels), CPython's own C limit after
    assert main.startswith("main RecursionError: maximum recursion depth exceeded")
    if not MONITORING:
        assert GUARD_MESSAGE in main


def test_deep_recursion_under_the_command_line(runner):
    script = runner.write(FALLBACK + RECURSION)
    plain = runner.python(str(script), timeout=300)
    assert plain.stdout == "thread 900\nmain 30000\n"
    proc = runner.memtrim(str(script), timeout=300)
    assert proc.returncode == 0, proc.stderr
    if MONITORING:  # no wrapper at all: sys.monitoring follows the code object
        assert proc.stdout.startswith(plain.stdout)
        row = next(line for line in proc.stdout.splitlines() if "return 0 if" in line)
        assert row.split()[7] == str(901 + 30001)
    else:
        assert proc.stdout.startswith("thread RecursionError:")
        assert GUARD_MESSAGE in proc.stdout.splitlines()[1]


def test_the_function_attributes_are_the_functions(runner):
    script = runner.write(
        API
        + """
@profile
def f(a, b=1, *, c=2):
    "doc"
    return (a, b, c)

f.__defaults__ = (10,)
f.__kwdefaults__ = {"c": 20}
f.__name__ = "renamed"
print(f(0), f.__wrapped__.__name__, f.__name__, f.__qualname__)
del f.__doc__
print(repr(f.__doc__), f.__wrapped__.__doc__)
f.counter = 1  # any other attribute: the wrapper's own, as with functools.wraps
print(f.counter, hasattr(f.__wrapped__, "counter"))
print([hasattr(f, a) for a in ("__dictoffset__", "__vectorcalloffset__", "__weaklistoffset__")])
try:
    f.__code__ = 5
except TypeError as exc:
    print("TypeError", exc)
print(repr(f).startswith("<function f at"))
"""
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "(0, 10, 20) renamed renamed f",
        "None None",
        "1 False",
        "[False, False, False]",
        "TypeError __code__ must be set to a code object",
        "True",
    ]


LOCALS = """
import sys
KEPT = []

@profile
def plain():
    big = bytearray(8 * 2**20)
    last = 1
    return 0

@profile
def with_locals():
    big = bytearray(8 * 2**20)
    last = 1
    locals()
    return 0

@profile
def with_frame_locals():
    big = bytearray(8 * 2**20)
    sys._getframe().f_locals  # a frame object and (3.11, 3.12) a locals dict
    last = 1
    return 0

@profile
def keeps_its_locals():
    big = bytearray(8 * 2**20)
    KEPT.append(locals())  # the locals live on in KEPT
    return 0

for f in (plain, with_locals, with_frame_locals, keeps_its_locals):
    f()
"""


@pytest.mark.parametrize("options", [(), ("-f", "*l*")], ids=["decorated", "by-name"])
def test_a_locals_dict_does_not_change_the_first_row(runner, options):
    tables = runner.profile_json(LOCALS, *options)
    freed = {
        "plain": tables["plain"][5],
        "with_locals": tables["with_locals"][11],
        "with_frame_locals": tables["with_frame_locals"][18],
    }
    for name, first in freed.items():
        # every local is gone when the call ends: it left nothing behind
        assert abs(first["increment"]) <= FIRST_RUN_NOISE, name
        assert first["peak_increment"] >= 8 * 2**20 + BYTEARRAY, name
    kept = tables["keeps_its_locals"][25]
    assert 0 <= kept["increment"] - (8 * 2**20 + BYTEARRAY) <= 4096


def test_a_locals_dict_through_the_wrapper(runner):
    script = runner.write(
        API
        + LOCALS
        + """
import re
firsts = re.findall(r"^ +\\d+ +[-\\d.]+ MiB +([-\\d.]+) MiB.*@profile$", TABLES.getvalue(), re.M)
print(firsts)
"""
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['0.000', '0.000', '0.000', '8.000']"


MONITORING_TOOL = """
import sys, gc
m = sys.monitoring
E = m.events
m.use_tool_id(0, "mydebugger")
seen, kept = [], []

def on_return(code, offset, retval):
    if code.co_name.startswith("w_"):
        fr = sys._getframe(1)  # the returning frame
        names = list(fr.f_locals)
        fr.f_locals[names[-1]] = "replaced"  # a debugger's write, to a local or a closure
        seen.append((code.co_name, {k: type(v).__name__ for k, v in fr.f_locals.items()}))
        kept.append(fr)  # kept, as a debugger does for post-mortem

m.register_callback(0, E.PY_RETURN, on_return)

@profile
def w_cell(n):
    big = [0] * n
    last = "text"
    return len(big)

def outer():
    fv = [1, 2, 3]
    @profile
    def w_free(a):
        return len(fv) + a  # the last slot is the free variable fv
    return w_free

@profile
def w_closure(n):
    cv = bytearray(n)
    def inner():
        return len(cv)
    return inner()

w_free = outer()
for f in (w_cell, w_free, w_closure):
    m.set_local_events(0, getattr(f, "__wrapped__", f).__code__, E.PY_RETURN)
print(w_cell(10), w_free(1), w_free(2), w_closure(10))
print(getattr(w_free, "__wrapped__", w_free).__closure__[0].cell_contents)
print(seen)
for fr in kept:
    print(fr.f_code.co_name, {k: type(v).__name__ for k, v in fr.f_locals.items()})
kept.clear()
gc.collect()
print("done")
"""


@pytest.mark.skipif(not MONITORING, reason="sys.monitoring is Python 3.12+")
@pytest.mark.parametrize("mode", ["api", "cli", "by-name"])
def test_other_monitoring_tools_see_the_frames_as_under_python(runner, mode):
    fallback = "profile = lambda f: f\n"
    runner.write(fallback + MONITORING_TOOL, "plain.py")
    plain = runner.python("plain.py")
    assert plain.returncode == 0, plain.stderr
    if mode == "api":
        runner.write(API + MONITORING_TOOL, "api.py")
        proc = runner.python("api.py")
    elif mode == "cli":
        runner.write(MONITORING_TOOL)
        proc = runner.memtrim("-o", "tables.txt", "script.py")
    else:
        runner.write(fallback + MONITORING_TOOL)
        proc = runner.memtrim("-o", "tables.txt", "-f", "w_*", "script.py")
    assert proc.stderr == plain.stderr
    assert proc.stdout == plain.stdout  # no pending_call, no raw cell, writes kept
    assert "pending_call" not in proc.stdout and "'cell'" not in proc.stdout
