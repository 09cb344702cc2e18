"""The bytecode layout behind lines from branch events (3.12+), on plain code objects."""

from __future__ import annotations

import dis
import sys

import pytest

from memtrim.engine import _branches

pytestmark = pytest.mark.skipif(sys.version_info < (3, 12), reason="3.12+: sys.monitoring")


def sample(n):  # type: ignore[no-untyped-def]
    t = 0
    for i in range(n):
        t += 1 if i % 2 else 2
    return t


def _rows(code):  # type: ignore[no-untyped-def]
    got = _branches.layout(code)
    assert got is not None
    flat, back = got
    assert len(flat) % 4 == 0 and len(back) % 2 == 0
    rows = [tuple(flat[i : i + 4]) for i in range(0, len(flat), 4)]
    return rows, [tuple(back[i : i + 2]) for i in range(0, len(back), 2)]


def test_instructions_cover_the_code_in_order_with_their_lines() -> None:
    rows, _ = _rows(sample.__code__)
    units = len(sample.__code__.co_code) // 2
    assert rows[0][0] == 0
    assert sum(r[1] for r in rows) == units  # contiguous: each with its caches
    lines = {ins.offset // 2: ins.positions.lineno for ins in dis.get_instructions(sample)}
    assert {r[0]: (r[2] if r[2] >= 0 else None) for r in rows} == lines
    assert rows[0][3] & _branches.RESUME  # the function starts with RESUME


def test_jump_targets_and_quiet_jumps() -> None:
    rows, _ = _rows(sample.__code__)
    flags = {r[0]: r[3] for r in rows}
    first = sample.__code__.co_firstlineno
    for ins in dis.get_instructions(sample):
        if ins.opcode not in _branches._RELATIVE | _branches._ABSOLUTE:
            continue
        assert flags[ins.argval // 2] & _branches.TARGET, ins
        quiet = bool(flags[ins.offset // 2] & _branches.QUIET)
        # the conditional expression jumps within its line; the loop crosses lines
        within = ins.positions.lineno == first + 3 and ins.opname != "JUMP_BACKWARD"
        assert quiet == within, ins


def test_generators_and_coroutines_keep_line_events() -> None:
    def gen():  # type: ignore[no-untyped-def]
        yield 1

    async def coro():  # type: ignore[no-untyped-def]
        return 1

    assert _branches.layout(gen.__code__) is None
    assert _branches.layout(coro.__code__) is None


def test_an_except_block_left_by_a_jump_back_is_listed() -> None:
    def f(d):  # type: ignore[no-untyped-def]
        try:
            x = d[1]
        except KeyError:
            x = 0
        return x

    rows, back = _rows(f.__code__)
    starts = {r[0] for r in rows}
    assert all(src in starts and target in starts and target <= src for src, target in back)
    events = {"JUMP_BACKWARD_NO_INTERRUPT"}  # 3.13: the except block jumps back
    expected = {
        (ins.offset // 2, ins.argval // 2)
        for ins in dis.get_instructions(f)
        if ins.opname in events
    }
    assert expected <= set(back)
