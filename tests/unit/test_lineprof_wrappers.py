"""The wrappers ``@profile`` puts around generators and coroutines."""

from __future__ import annotations

import asyncio

from memtrim.engine import tracer
from memtrim.lines.session import LineProfiler


def _counting(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    enter, exit_ = tracer.enter, tracer.exit

    def counted_enter() -> None:
        calls.append("enter")
        enter()

    def counted_exit() -> None:
        calls.append("exit")
        exit_()

    monkeypatch.setattr(tracer, "enter", counted_enter)
    monkeypatch.setattr(tracer, "exit", counted_exit)
    return calls


def test_resumptions_are_bracketed_only_where_the_tracer_needs_it(monkeypatch):
    calls = _counting(monkeypatch)
    prof = LineProfiler()

    def gen(n):  # type: ignore[no-untyped-def]
        yield from range(n)

    async def coro():  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        return 7

    try:
        assert list(prof(gen)(5)) == [0, 1, 2, 3, 4]
        assert asyncio.run(prof(coro)()) == 7
    finally:
        prof.release()
    if tracer.MONITORING:
        # sys.monitoring follows the frames: the wrappers only delegate
        assert calls == []
    else:
        # 3.11: the trace function is on while each resumption runs (6 of the
        # generator, 2 of the coroutine)
        assert calls == ["enter", "exit"] * 8
    # measured all the same: the first row counts the start and each resumption
    first = {t.function.rsplit(".", 1)[-1]: t.lines[0] for t in prof.tables()}
    assert first["gen"].lineno == gen.__code__.co_firstlineno
    assert first["gen"].occurrences == 6
    assert first["coro"].occurrences == 2
