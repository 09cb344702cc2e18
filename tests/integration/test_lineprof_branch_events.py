"""3.12+: lines from branch events give the tables of LINE events.

The engine replays, from JUMP/BRANCH events, calls, returns and handled
exceptions, the LINE events CPython would have sent ("virtual lines" in
tracer.c). Each program below runs once with ``MEMTRIM_LINE_EVENTS=line``
and once with branch events, in this process: every row (occurrences,
increment, peak) must be the same.
"""

from __future__ import annotations

import gc
import inspect
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from memtrim.engine import tracer
from memtrim.lines.session import LineProfiler

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="3.12+: sys.monitoring")
SUSPENDING = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR

PROGRAMS = {
    "branches and loops": """
        def main(n):
            out = []
            t = 0
            for i in range(n):
                if i % 3 == 0:
                    out.append(bytearray(1000))
                elif i % 3 == 1:
                    t += i
                else:
                    out.append([None] * 10)
                while t > 50:
                    t -= 7
                    keep = bytearray(100)
            x = 1 if n else 2
            ok = n and t or x
            return out, t, ok
        """,
    "multi-line statements": """
        def main(n):
            data = [
                bytearray(i)
                for i in range(n)
            ]
            total = sum(
                len(d)
                for d in data
            )
            s = (bytearray(500) if total
                 else bytearray(900))
            return data, total, s
        """,
    "exceptions": """
        def fail(n):
            raise KeyError(n)

        def main(n):
            out = []
            for i in range(n):
                try:
                    if i % 2:
                        fail(i)
                    out.append(bytearray(200))
                except KeyError:
                    out.append(bytearray(300))
                finally:
                    out.append(bytearray(10))
                try: {}[i]
                except KeyError: out.append([None] * 3)
            try:
                with Guard() as g:
                    raise ValueError(g.name)
            except ValueError as e:
                msg = str(e) * 4
            return out, msg

        class Guard:
            name = "guard"

            def __enter__(self):
                self.buf = bytearray(64)
                return self

            def __exit__(self, *exc):
                del self.buf
        """,
    "generators and yield from": """
        def inner(n):
            for i in range(n):
                got = yield bytearray(i * 10)
                if got:
                    yield [None] * got

        def outer(n):
            r = yield from inner(n)
            yield bytearray(1000)
            return r

        def main(n):
            g = outer(n)
            out = [next(g)]
            out.append(g.send(4))
            out.extend(g)
            e = inner(3)
            next(e)
            e.close()
            t = inner(3)
            next(t)
            try:
                t.throw(ValueError("x"))
            except ValueError:
                out.append(bytearray(77))
            return out
        """,
    "coroutines": """
        class Pause:
            def __await__(self):
                yield bytearray(8)

        async def leaf(n):
            await Pause()
            return bytearray(n)

        async def mid(n):
            a = await leaf(n)
            b = [await leaf(i) for i in range(3)]
            return a, b

        def main(n):
            co = mid(n)
            got = []
            try:
                while True:
                    got.append(co.send(None))
            except StopIteration as stop:
                return stop.value, got
        """,
    "recursion and nested functions": """
        def main(n):
            def rec(k):
                if k == 0:
                    return [bytearray(50)]
                out = rec(k - 1)
                out.append(bytearray(k))
                return out
            f = lambda k: [None] * k
            return rec(n), f(n), [f(i) for i in range(3)]
        """,
    "a C call that releases the GIL": """
        import hashlib, zlib

        def main(n):
            data = bytes(range(256)) * n
            packed = zlib.compress(data, 9)
            digest = hashlib.pbkdf2_hmac("sha256", data[:64], b"salt", 100)
            back = zlib.decompress(packed)
            return len(packed), digest, back
        """,
    "long code": "def main(n):\n"
    + "".join(f"    v{i % 7} = [{i}] * {i % 5 + 1}\n" for i in range(200))
    + "    for i in range(n):\n"
    + "        if i % 2:\n"
    + "            v1 = bytearray(i)\n"
    + "    return v1\n",
}


def _let_go(prof: LineProfiler) -> None:
    prof.release()
    prof.functions.clear()  # the wrapped functions, and their code objects, can go
    gc.collect()


def _run(source: str, tmp_path, mode: str, monkeypatch) -> list[tuple[str, int, int, int, int]]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEMTRIM_LINE_EVENTS", mode)
    path = tmp_path / "prog.py"  # one name: the programs' figures must not depend on it
    path.write_text(textwrap.dedent(source))
    ns: dict[str, object] = {"__file__": str(path), "__name__": "prog"}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    main = ns["main"]
    prof = LineProfiler()
    try:
        wrapped = prof(main)
        for code in tracer.nested_code(main.__code__):  # type: ignore[attr-defined]
            if code.co_name in ns:
                prof.add_function(ns[code.co_name])
        for name in ("fail", "inner", "outer", "leaf", "mid"):
            if name in ns:
                prof.add_function(ns[name])
        sources = {fn.code: tracer.line_source(fn.code) for fn in prof.functions}
        for _ in range(2):
            wrapped(12)
        rows = [
            (t.function, r.lineno, r.occurrences, r.increment, r.peak_increment)
            for t in prof.tables()
            for r in t.lines
            if r.ran
        ]
    finally:
        del wrapped
        _let_go(prof)
    for code, source in sources.items():
        if mode == "line":
            assert source in ("line", "instruction"), (code, source)
        else:  # generators and coroutines keep LINE events (_branches.py)
            assert source == ("line" if code.co_flags & SUSPENDING else "branch"), (code, source)
    return rows  # type: ignore[return-value]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_branch_events_give_the_tables_of_line_events(name, tmp_path, monkeypatch) -> None:
    source = PROGRAMS[name]
    _run(source, tmp_path, "branch", monkeypatch)  # the first run of the code: caches warm up
    via_lines = _run(source, tmp_path, "line", monkeypatch)
    via_branches = _run(source, tmp_path, "branch", monkeypatch)
    assert via_branches == via_lines


def test_threads_each_replay_their_own_lines(tmp_path, monkeypatch) -> None:
    # (bytearrays: a list object may come from CPython's free list, which
    # memtrim's own work at registration fills differently in each mode)
    source = """
        def main(n):
            out = []
            for i in range(n):
                if i % 2:
                    out.append(bytearray(1000))
                else:
                    out.append(bytearray(300))
            return out
        """

    def run(mode: str) -> list[tuple[int, int, int]]:
        monkeypatch.setenv("MEMTRIM_LINE_EVENTS", mode)
        ns: dict[str, object] = {}
        exec(compile(textwrap.dedent(source), str(tmp_path / "t.py"), "exec"), ns)
        prof = LineProfiler()
        try:
            wrapped = prof(ns["main"])
            threads = [threading.Thread(target=wrapped, args=(200,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return [
                (r.lineno, r.occurrences, r.increment)
                for t in prof.tables()
                for r in t.lines
                if r.ran
            ]
        finally:
            _let_go(prof)

    run("branch")
    assert run("branch") == run("line")


AGAIN_PROGRAM = """
def main(n, again):
    out = []
    for i in range(n):
        if i == n // 2:
            again()
        out.append(bytearray(100 + i))
    return out
"""

AGAIN = """
import sys
from memtrim.engine import _branches, tracer
from memtrim.lines.session import LineProfiler

ns = {}
with open(sys.argv[1]) as f:
    exec(compile(f.read(), sys.argv[1], "exec"), ns)
code = ns["main"].__code__
prof = LineProfiler()

def again():
    if tracer.line_source(code) == "branch":
        assert tracer._engine.tr_use_branches(code, *_branches.layout(code))
    for _ in range(100):  # new blocks where the old tables were
        bytearray(100).hex()

prof(ns["main"])(40, again)
print([(r.lineno, r.occurrences, r.increment) for t in prof.tables() for r in t.lines if r.ran])
"""


def test_tables_built_again_while_the_code_runs(tmp_path) -> None:
    # The engine builds a code's virtual-line tables again while a frame of it
    # runs: the frame goes on with the new ones, and the old ones stay until
    # the registry resets (another thread may read them without the GIL).
    # MALLOC_PERTURB_ makes glibc overwrite freed blocks: a frame reading
    # freed tables crashes or counts wrong (it did before either was done).
    script, program = tmp_path / "again.py", tmp_path / "prog.py"
    script.write_text(AGAIN)
    program.write_text(AGAIN_PROGRAM)

    def run(mode: str) -> str:
        env = dict(os.environ, MALLOC_PERTURB_="85", MEMTRIM_LINE_EVENTS=mode)
        done = subprocess.run(
            [sys.executable, str(script), str(program)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    via_branches = run("branch")
    assert via_branches == run("line")
    # the append line: 40 bytearrays and the list's array of pointers
    grown: list[object] = []
    for _ in range(40):
        grown.append(None)
    kept = sum(sys.getsizeof(bytearray(100 + i)) for i in range(40))
    kept += sys.getsizeof(grown) - sys.getsizeof([])
    assert f"(7, 40, {kept})" in via_branches
