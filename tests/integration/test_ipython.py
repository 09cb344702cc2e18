"""The IPython magics, run in a real InteractiveShell in a subprocess."""

from __future__ import annotations

import pytest

pytest.importorskip("IPython")

SESSION = """
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_line_magic("load_ext", "memtrim")
ip.run_cell('''
def grow(n):
    a = bytearray(n)
    b = [None] * 1000
    return len(a)
''')
result = ip.run_line_magic("memit", "-o -q len(bytearray(50 * 2**20))")
print("MEMIT", result.increment)
ip.run_line_magic("memit", "x = bytearray(10 * 2**20)")
ip.run_cell_magic("memit", "", "y = bytearray(3 * 2**20)\\ndel y")
ip.run_line_magic("mprun", "-f grow grow(2**20)")
ip.run_line_magic("mprun", "-f grow grow(2**20)")
try:
    ip.run_line_magic("mprun", "-f nothing_here grow(1)")
except Exception as exc:
    print("ERR", type(exc).__name__, exc)
"""


def test_magics(runner):
    script = runner.write(SESSION)
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    increment = int(out.split("MEMIT ")[1].split()[0])
    assert 0 <= increment - (56 + 50 * 2**20 + 1) <= 1024
    assert "increment: 10.00 MiB" in out
    assert "increment: 3.00 MiB" in out
    assert out.count("    a = bytearray(n)") == 2
    row = next(line for line in out.splitlines() if line.endswith("    a = bytearray(n)"))
    assert "    1.000 MiB    1.000 MiB           1" in row  # fresh counts each %mprun
    assert "ERR UsageError %mprun: could not find function 'nothing_here'" in out
