"""Under ``python -m memtrim`` the program sees what it sees under ``python``."""

from __future__ import annotations

import json
import signal
import sys

import pytest

FALLBACK = """
try:
    profile
except NameError:
    profile = lambda f: f
"""


def same_as_python(runner, source: str, *args: str, script: str = "script.py"):
    """Run under python and memtrim (tables to a file); both runs must match."""
    runner.write(FALLBACK + source)
    tables = runner.tmp_path / "tables.txt"
    plain = runner.python(script, *args)
    profiled = runner.memtrim("-o", str(tables), script, *args)
    assert profiled.stdout == plain.stdout
    assert profiled.stderr == plain.stderr
    assert profiled.returncode == plain.returncode
    return profiled, tables.read_text()


def test_frames_seen_by_the_program_are_its_own(runner):
    proc, tables = same_as_python(
        runner,
        """
import inspect, sys, traceback, warnings

@profile
def f():
    warnings.warn("careful", stacklevel=2)
    print(sys._getframe(1).f_code.co_name, len(inspect.stack()))
    print(sys._getframe(2).f_back is None)
    raise ValueError("inner")

def outer():
    try:
        f()
    except ValueError as e:
        raise RuntimeError("outer") from e

try:
    outer()
except RuntimeError:
    traceback.print_exc()
outer()
""",
    )
    assert proc.stdout == "outer 3\nTrue\n" * 2
    assert "script.py:" in proc.stderr and "_wrap" not in proc.stderr
    assert proc.returncode == 1
    assert "def f():" in tables


def test_generator_and_coroutine_tracebacks(runner):
    proc, _ = same_as_python(
        runner,
        """
import asyncio, traceback

@profile
def gen():
    yield 1
    raise ValueError("g")

@profile
async def co():
    await asyncio.sleep(0)
    raise KeyError("c")

try:
    list(gen())
except ValueError:
    traceback.print_exc()
asyncio.run(co())
""",
    )
    assert proc.returncode == 1
    assert 'raise ValueError("g")' in proc.stderr and 'raise KeyError("c")' in proc.stderr


def test_the_main_module_is_like_pythons(runner):
    proc, _ = same_as_python(
        runner,
        """
import sys
print(type(__builtins__).__name__, __builtins__.len("abc"))
print([k for k in globals() if k.startswith("__")])
print(__file__, __loader__.path, __loader__.name, sys.argv)
print(__annotations__, __doc__, __spec__, __package__, __cached__)
""",
        "x",
        script="./script.py",
    )
    assert proc.stdout.startswith("module 3\n")
    assert f"{runner.tmp_path}/./script.py" in proc.stdout  # absolute, not normalized


def test_recursion_depth_is_the_same(runner):
    proc, _ = same_as_python(
        runner,
        """
import sys

@profile
def r(n):
    try:
        return r(n + 1)
    except RecursionError:
        return n

print(r(0), sys.getrecursionlimit())
def plain(n):
    return plain(n + 1)
plain(0)
""",
    )
    assert proc.returncode == 1
    assert "RecursionError" in proc.stderr
    assert int(proc.stdout.split()[0]) > 900


def test_cprofile_inside_a_profiled_script(runner):
    script = runner.write(
        FALLBACK
        + """
import cProfile, pstats

@profile
def work():
    return bytearray(10**6)

pr = cProfile.Profile()
pr.enable()
keep = work()
pr.disable()
keep = work()
print(sorted(k[2] for k in pstats.Stats(pr).stats if k[2] == "work"))
"""
    )
    tables = runner.tmp_path / "tables.txt"
    plain = runner.python(str(script))
    proc = runner.memtrim("-o", str(tables), str(script))
    assert proc.returncode == plain.returncode == 0
    assert proc.stdout == plain.stdout == "['work']\n"  # cProfile saw the call
    row = next(line for line in tables.read_text().splitlines() if "return bytearray" in line)
    if sys.version_info >= (3, 12):  # sys.monitoring: both tools see every call
        assert row.split()[7] == "2"
        assert proc.stderr == ""
    else:  # 3.11: memtrim leaves cProfile alone and says what it did not measure
        assert row.split()[7] == "1"
        assert proc.stderr.count("\n") == 1
        assert "calls of work were not measured" in proc.stderr


def test_cprofile_toggled_under_f_on_any_version(runner):
    script = runner.write(
        """
        import cProfile
        def work():
            return bytearray(10**6)
        pr = cProfile.Profile(); pr.enable(); pr.disable()
        keep = work()
        """
    )
    proc = runner.memtrim("-f", "work", str(script))
    assert proc.returncode == 0
    # 3.11: memtrim's profile function is put back once cProfile is off
    row = next(line for line in proc.stdout.splitlines() if "return bytearray" in line)
    assert row.split()[7] == "1"
    assert proc.stderr.count("\n") <= 1


def test_a_closed_stdout_still_gets_the_tables(runner):
    script = runner.write(
        FALLBACK
        + """
import sys
@profile
def f():
    return 1
f()
sys.stdout.close()
"""
    )
    plain = runner.python(str(script))
    profiled = runner.memtrim(str(script))
    assert plain.returncode == profiled.returncode == 0
    assert profiled.stderr == plain.stderr == ""
    assert "def f():" in profiled.stdout  # written to file descriptor 1


def test_tables_wait_for_threads_and_show_no_placeholder(runner):
    script = runner.write(
        """
        import threading, time
        @profile
        def work():
            time.sleep(0.3)
            x = bytearray(5 * 2**20)
            print("work done", flush=True)
            return len(x)
        threading.Thread(target=work).start()
        print("main done", flush=True)
        """
    )
    out = runner.tmp_path / "t.json"
    proc = runner.memtrim("--json", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.index("work done") < proc.stdout.index("Filename:")
    (table,) = json.loads(out.read_text())["functions"]
    lines = {line["lineno"]: line for line in table["lines"]}
    assert lines[6]["increment"] == 5 * 2**20 + 57
    assert all(0 < line["mem_usage"] < 2**40 for line in lines.values())


def test_a_line_still_running_at_the_end_shows_the_memory_then(runner):
    script = runner.write(
        """
        import threading, time
        @profile
        def forever():
            x = bytearray(10**6)
            time.sleep(60)
        threading.Thread(target=forever, daemon=True).start()
        time.sleep(0.3)
        """
    )
    out = runner.tmp_path / "t.json"
    proc = runner.memtrim("--json", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    lines = {line["lineno"]: line for line in json.loads(out.read_text())["functions"][0]["lines"]}
    assert lines[6]["occurrences"] == 1
    assert 0 < lines[6]["mem_usage"] < 2**40
    assert "-8796093022" not in proc.stdout


def test_atexit_handlers_run_before_the_tables(runner):
    script = runner.write(
        """
        import atexit
        @profile
        def f(n):
            return bytearray(n)
        atexit.register(lambda: print("handler", len(f(3000))))
        keep = f(1000)
        """
    )
    proc = runner.memtrim(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("handler 3000\n")
    row = next(line for line in proc.stdout.splitlines() if "return bytearray" in line)
    assert row.split()[7] == "2"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_keyboard_interrupt_runs_atexit_then_dies_of_sigint(runner):
    script = runner.write(
        FALLBACK
        + """
import atexit
atexit.register(lambda: print("handler ran", flush=True))
@profile
def f():
    raise KeyboardInterrupt
f()
"""
    )
    plain = runner.python(str(script))
    profiled = runner.memtrim(str(script))
    assert plain.returncode == profiled.returncode == -signal.SIGINT
    assert profiled.stderr == plain.stderr
    assert plain.stdout == "handler ran\n"
    assert profiled.stdout.startswith("handler ran\n")
    assert "raise KeyboardInterrupt" in profiled.stdout  # the table, before the signal
