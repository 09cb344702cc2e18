"""Long code objects: per-line bookkeeping is constant per event (issue 16).

On 3.12 and 3.13 CPython recomputes, at every LINE event, the line of a LINE
location whose line does not fit its 8-bit delta by scanning the code's whole
location table: a function of N statements cost O(N) per line. memtrim takes
such code's line events from INSTRUCTION events (the offset, nothing
computed) and its own offset -> line table. These tests check that switch
structurally, that the figures stay those of LINE events, and (loosely) that
the time per statement does not grow with the function's length.
"""

from __future__ import annotations

import gc
import sys
import time

import pytest

from memtrim.engine import tracer
from memtrim.lines.session import LineProfiler

monitoring = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="3.12+: INSTRUCTION events for long code"
)


def _long_function(n: int, tmp_path, name: str = "big"):  # type: ignore[no-untyped-def]
    lines = [f"def {name}():", "    x = 0"]
    lines += [f"    x = x + {i}" for i in range(n)]
    lines += ["    s = [x] * 3", "    return s", ""]
    path = tmp_path / f"{name}_{n}.py"
    path.write_text("\n".join(lines))
    ns: dict[str, object] = {}
    exec(compile(path.read_text(), str(path), "exec"), ns)
    return ns[name]


def _table(prof: LineProfiler) -> list[tuple[int, int, int | None, int | None]]:
    return [
        (r.lineno, r.occurrences, r.increment, r.peak_increment)
        for t in prof.tables()
        for r in t.lines
        if r.ran
    ]


def _let_go(prof: LineProfiler) -> None:
    # the tables (and memtrim's monitoring tool) go with their functions
    prof.release()
    prof.functions.clear()
    gc.collect()


@monitoring
def test_long_code_uses_instruction_events(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEMTRIM_LINE_EVENTS", "line")  # else: branch events
    short = _long_function(20, tmp_path, "short")
    long = _long_function(3000, tmp_path, "long")
    prof = LineProfiler()
    try:
        prof.add_function(short)
        prof.add_function(long)
        assert tracer.line_source(short.__code__) == "line"
        assert tracer.line_source(long.__code__) == "instruction"
    finally:
        _let_go(prof)


def test_long_code_counts_every_line_once_per_call(tmp_path) -> None:
    n = 3000
    func = _long_function(n, tmp_path)
    prof = LineProfiler()
    try:
        wrapped = prof(func)
        with prof:
            for _ in range(3):
                wrapped()
        rows = _table(prof)
    finally:
        _let_go(prof)
        del wrapped
        gc.collect()
    assert len(rows) == n + 4  # def line (the call), x = 0, n statements, s = ..., return
    assert all(occ == 3 for _, occ, _, _ in rows)
    by_line = {line: (inc, peak) for line, _, inc, peak in rows}
    # x leaves the small-int cache at statement 23 (x = 276): the only
    # statement that leaves an allocation behind (as on 3.11's trace function)
    assert [line for line in range(3, n + 3) if by_line[line][0] != 0] == [26]


@monitoring
def test_instruction_events_give_the_figures_of_line_events(tmp_path, monkeypatch) -> None:
    # a long function with loops, branches, an exception and comprehensions:
    # the same table through INSTRUCTION events as through LINE events
    body = [f"    v{i % 9} = [{i}] * {i % 4 + 1}" for i in range(300)]
    body += [
        "    t = 0",
        "    for k in range(6):",
        "        if k % 2:",
        "            t += k",
        "        else:",
        "            t -= 1",
        "    try:",
        "        raise ValueError(t)",
        "    except ValueError as e:",
        "        m = str(e) * 4",
        "    sq = [i * i for i in range(40)",
        "          if i % 3]",
        "    return t",
    ]
    path = tmp_path / "mixed.py"
    path.write_text("def mixed():\n" + "\n".join(body) + "\n")

    def run(force_lines: bool) -> list[tuple[int, int, int | None, int | None]]:
        ns: dict[str, object] = {}
        exec(compile(path.read_text(), str(path), "exec"), ns)
        func = ns["mixed"]
        monkeypatch.setenv("MEMTRIM_LINE_EVENTS", "line")  # else: branch events
        if force_lines:
            monkeypatch.setattr(tracer, "_engine", _NoInstructions(tracer._engine))
        prof = LineProfiler()
        try:
            wrapped = prof(func)
            expected = "line" if force_lines else "instruction"
            assert tracer.line_source(func.__code__) == expected  # type: ignore[attr-defined]
            for _ in range(3):
                wrapped()
            return _table(prof)
        finally:
            _let_go(prof)
            del wrapped
            monkeypatch.undo()
            gc.collect()

    via_instructions = run(False)
    via_lines = run(True)
    assert [r[:2] for r in via_instructions] == [r[:2] for r in via_lines]
    assert [r[2] for r in via_instructions] == [r[2] for r in via_lines]
    # peaks: equal, but a line whose mark stayed within one boxed int (32 B)
    # of its level may read lower through a boxed argument
    for a, b in zip(via_instructions, via_lines, strict=True):
        assert a[3] is not None and b[3] is not None
        assert abs(a[3] - b[3]) <= 32, (a, b)


class _NoInstructions:
    def __init__(self, engine: object) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def tr_use_instructions(self, code: object, lines: object) -> bool:
        return False


def _per_statement(n: int, tmp_path) -> float:  # type: ignore[no-untyped-def]
    func = _long_function(n, tmp_path, f"f{n}")
    prof = LineProfiler()
    try:
        wrapped = prof(func)
        with prof:
            wrapped()  # first call: instrumentation, disabling
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                wrapped()
                best = min(best, time.perf_counter() - start)
    finally:
        _let_go(prof)
        del wrapped
        gc.collect()
    return best / n


def test_time_per_statement_does_not_grow_with_length(tmp_path) -> None:
    # quadratic before: 40k statements cost ~50x more per statement than 5k on
    # 3.13; linear now. The factor is generous for a noisy machine.
    small = _per_statement(5_000, tmp_path)
    large = _per_statement(40_000, tmp_path)
    assert large < small * 4, (small, large)
