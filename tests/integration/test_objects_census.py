"""census() and growth() in a real script: a leaking loop shows up in bytes."""

from __future__ import annotations

import json

LEAK = """
import io
import json
import sys
import tracemalloc

import memtrim


class Session:
    def __init__(self, i):
        self.user = "user-%06d" % i
        self.history = [i]


SESSIONS = []


def serve(n):
    for i in range(n):
        session = Session(i)  # MAKE: the object and its attribute storage
        SESSIONS.append(session)  # the leak: sessions are never dropped


def allocated_on(snapshot, marker):
    # bytes still held that were allocated right on the line marked `marker`
    lines = open(__file__).read().splitlines()
    lineno = next(i for i, text in enumerate(lines, 1) if marker in text)
    return sum(
        t.size for t in snapshot.traces
        if t.traceback[0].filename == __file__ and t.traceback[0].lineno == lineno
    )


[Session(i) for i in range(40)]  # the class's shared keys stop shrinking
memtrim.growth(file=io.StringIO())  # baseline
before = memtrim.census()
tracemalloc.start(1)
serve(2000)
real = allocated_on(tracemalloc.take_snapshot(), "# " + "MAKE")
tracemalloc.stop()
after = memtrim.census()
grown = {row.type: row for row in after - before}
out = io.StringIO()
printed = memtrim.growth(file=out)
expected = {
    "__main__.Session": real,
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


def test_growth_shows_nothing_of_its_own_from_the_second_call_on(runner):
    script = runner.write(
        """
        import io
        import json
        import memtrim

        for i in range(4):  # nothing is kept from one call to the next
            out = io.StringIO()
            grown = len(memtrim.growth(file=out))
            if i:
                print(json.dumps([out.getvalue().splitlines()[1:], grown]))
        """
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [[[], 0]] * 3
