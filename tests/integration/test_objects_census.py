"""census() and growth() in a real script: a leaking loop shows up in bytes."""

from __future__ import annotations

import json

LEAK = """
import io
import json
import sys

import memtrim
from memtrim.analysis import _layout


class Session:
    def __init__(self, i):
        self.user = "user-%06d" % i
        self.history = [i]


SESSIONS = []


def serve(n):
    for i in range(n):
        SESSIONS.append(Session(i))  # the leak: sessions are never dropped


memtrim.growth(file=io.StringIO())  # baseline
before = memtrim.census()
serve(2000)
after = memtrim.census()
grown = {row.type: row for row in after - before}
out = io.StringIO()
printed = memtrim.growth(file=out)
expected = {
    "__main__.Session": sum(sys.getsizeof(s) + _layout.inline_nbytes(s) for s in SESSIONS),
    "str": sum(sys.getsizeof(s.user) for s in SESSIONS),
    "list_count": len(SESSIONS),
}
print(json.dumps({
    "rows": {t: [r.count_delta, r.bytes_delta] for t, r in grown.items()},
    "expected": expected,
    "growth": out.getvalue(),
    "growth_rows": [r.type for r in printed],
    "memtrim_rows": [t for t in grown if t.startswith("memtrim.")],
}))
"""


def test_census_diff_shows_a_leaking_loop_in_bytes(runner):
    script = runner.write(LEAK)
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows, expected = data["rows"], data["expected"]
    assert rows["__main__.Session"] == [2000, expected["__main__.Session"]]
    count, size = rows["str"]
    assert count == 2000 and size == expected["str"]
    assert rows["list"][0] >= 2000  # each session's history (the SESSIONS list grew too)
    assert data["memtrim_rows"] == []  # memtrim's own bookkeeping is left out
    # growth() since the previous growth() call shows the same leak, with bytes
    assert data["growth_rows"][:3] and "__main__.Session" in data["growth_rows"]
    line = next(ln for ln in data["growth"].splitlines() if ln.startswith("__main__.Session"))
    assert line.split()[1:] == [
        "2000",
        "+2000",
        str(expected["__main__.Session"]),
        f"+{expected['__main__.Session']}",
    ]
