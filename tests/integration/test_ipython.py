"""The IPython magics, run in a real InteractiveShell in a subprocess."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("IPython")

MIB = 2**20
BYTEARRAY = 56 + 1

SESSION = """
import json
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "memtrim")
ip.run_cell('''
def grow(n):
    a = bytearray(n)
    b = [None] * 1000
    return len(a)
''')
r = ip.run_line_magic("memit", "-o -q len(bytearray(50 * 2**20))")
print("MEMIT", json.dumps([r.increment_bytes, r.baseline_bytes, r.baseline, r.mem_usage,
                           r.repeat, r.timeout, r.interval, r.include_children]))
print("STR", r)
ip.run_line_magic("memit", "x = bytearray(10 * 2**20)")
ip.run_line_magic("memit", "-r3 -i 0.01 -t 30 y = bytearray(2**20)")
ip.run_cell_magic("memit", "setup = bytearray(20 * 2**20)", "small = len(setup)")
print("SETUP RAN", "setup" in ip.user_ns)
ip.run_cell_magic("memit", "-r 2", "y = bytearray(3 * 2**20)\\ndel y")
r = ip.run_line_magic(
    "memit", "-o -q -t 0.2 import time; time.sleep(0.8); z = bytearray(10 * 2**20)"
)
print("TIMEOUT", r.timeout, r.increment_bytes)
for bad in ("-c x = 1", "-r 0 x = 1", "-i nope x = 1"):
    try:
        ip.run_line_magic("memit", bad)
    except Exception as exc:
        print("ERR", type(exc).__name__, exc)
ip.run_line_magic("mprun", "-f grow grow(2**20)")
ip.run_line_magic("mprun", "-f grow grow(2**20)")
try:
    ip.run_line_magic("mprun", "-f nothing_here grow(1)")
except Exception as exc:
    print("ERR", type(exc).__name__, exc)
import sys
from memtrim.engine import tracer
if hasattr(sys, "monitoring"):  # %mprun's instrumentation is gone once it returns
    code = ip.user_ns["grow"].__code__
    tool = tracer.tool_id()  # None: the tool id was freed with the last table
    print("EVENTS", 0 if tool is None else sys.monitoring.get_local_events(tool, code))
else:
    print("EVENTS", int(sys.getprofile() is not None or sys.gettrace() is not None))
"""


def test_magics(runner):
    script = runner.write(SESSION)
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    inc, base_bytes, base, mem_usage, repeat, timeout, interval, children = json.loads(
        out.split("MEMIT ")[1].splitlines()[0]
    )
    # memory_profiler's attributes and units: MiB; the exact bytes beside them
    assert 0 <= inc - (50 * MIB + BYTEARRAY) <= 1024
    assert base == base_bytes / MIB and base_bytes > 10 * MIB
    assert mem_usage == [(base_bytes + inc) / MIB]
    assert (repeat, timeout, interval, children) == (1, None, 0.1, False)
    peak = (base_bytes + inc) / MIB
    assert f"STR peak memory: {peak:.2f} MiB, increment: {peak - base:.2f} MiB" in out
    assert "increment: 10.00 MiB" in out
    assert "increment: 1.00 MiB" in out  # -r, -i and -t accepted
    # %%memit SETUP: the setup line runs once, unmeasured
    assert "SETUP RAN True" in out
    assert "increment: 0.00 MiB" in out
    assert "increment: 3.00 MiB" in out
    # -t T: the peak of the first T seconds, as memory_profiler samples no longer
    timeout_line = out.split("TIMEOUT ")[1].splitlines()[0].split()
    assert timeout_line[0] == "0.2" and int(timeout_line[1]) < MIB
    assert "ERR UsageError %memit: -c (child processes) is not supported" in out
    assert "ERR UsageError %memit: -r must be at least 1" in out
    assert "ERR UsageError %memit: -i needs a number" in out
    assert out.count("    a = bytearray(n)") == 2
    row = next(line for line in out.splitlines() if line.endswith("    a = bytearray(n)"))
    assert "    1.000 MiB    1.000 MiB           1" in row  # fresh counts each %mprun
    first = next(line for line in out.splitlines() if line.endswith("def grow(n):"))
    assert first.split()[3] == "0.000"  # the call as a whole: all released
    assert "ERR UsageError %mprun: could not find function 'nothing_here'" in out
    assert "EVENTS 0\n" in out


ERRORS = """
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("colors", "nocolor")
ip.run_line_magic("load_ext", "memtrim")
ip.run_cell('''
def grow(n):
    a = bytearray(n)
    return len(a)
''')
for cell in (
    "%memit grow(None)",
    "%%memit\\nx = 1\\ngrow(None)",
    "%%memit raise_here = bytearray(None)\\nx = 1",
    "%mprun -f grow grow(None)",
    "%mprun -T /missing/dir/out.txt -f grow grow(1)",
    "%mprun -T . -f grow grow(1)",
):
    print("=== CELL", cell.replace("\\n", "|"))
    result = ip.run_cell(cell)
    print("=== RAISED", type(result.error_in_exec).__name__)
ip.run_line_magic("memit", "-q grow(2**20)")
print("=== STILL WORKS")
"""


def test_errors_show_the_users_traceback_only(runner):
    script = runner.write(ERRORS)
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    cells = out.split("=== CELL ")[1:]
    assert len(cells) == 6 and out.rstrip().endswith("=== STILL WORKS")
    for text in cells:
        # none of memtrim's frames, no frame without source
        assert "memtrim" not in text.replace("load_ext", "")
        assert "ipython.py" not in text and "Could not get source" not in text
    for text in cells[:2]:
        assert "=== RAISED TypeError" in text
        assert "----> 2     a = bytearray(n)" in text  # the user's function
        assert "TypeError: cannot convert 'NoneType' object to bytearray" in text
    assert "----> 1 grow(None)" in cells[0]  # the statement's own line, with its source
    assert "----> 2 grow(None)" in cells[1]
    assert "----> 1 raise_here = bytearray(None)" in cells[2]  # the setup line
    assert "    a = bytearray(n)" in cells[3] and "Line #" in cells[3]  # tables first
    assert "----> 1 grow(None)" in cells[3]
    for text in cells[4:]:
        assert "Traceback" not in text and "Line #" not in text  # nothing ran
        assert "=== RAISED UsageError" in text
    # one line each (IPython prints usage errors on stderr)
    assert proc.stderr.splitlines() == [
        "UsageError: %mprun: cannot write -T /missing/dir/out.txt: no such directory: /missing/dir",
        "UsageError: %mprun: cannot write -T .: . is a directory",
    ]
