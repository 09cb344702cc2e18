"""The README's example output is what the command really prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "$ python -m memtrim examples/article.py\n"
ROW = re.compile(r"^\s*(\d+)\s+([\d.]+) MiB\s+(-?[\d.]+) MiB\s+([\d.]+) MiB\s+(\d+)   (.*)$")


def _rows(table: str) -> list[tuple[int, float, float, float, int, str]]:
    rows = []
    for line in table.splitlines():
        match = ROW.match(line)
        if match:
            n, usage, inc, peak, occ, source = match.groups()
            rows.append((int(n), float(usage), float(inc), float(peak), int(occ), source))
    return rows


def test_the_readme_table_is_a_real_run():
    readme = (ROOT / "README.md").read_text()
    start = readme.index(COMMAND) + len(COMMAND)
    shown = readme[start : readme.index("```", start)]
    proc = subprocess.run(
        [sys.executable, "-m", "memtrim", "examples/article.py"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    real = proc.stdout.split("\n\n\n")[0]
    assert shown.splitlines()[0].endswith("examples/article.py")
    assert shown.splitlines()[2:4] == real.splitlines()[2:4]  # the header
    expected, got = _rows(shown), _rows(real)
    assert len(expected) == len(got) >= 5
    base_e, base_g = expected[0][1], got[0][1]
    for e, g in zip(expected, got, strict=True):
        assert (e[0], e[4], e[5]) == (g[0], g[4], g[5])  # line, occurrences, source
        for a, b in ((e[2], g[2]), (e[3], g[3]), (e[1] - base_e, g[1] - base_g)):
            assert abs(a - b) <= 0.0015  # exact figures; Mem usage's base is one RSS reading
