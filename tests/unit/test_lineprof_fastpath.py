"""The line tracer's per-event fast paths (issue 17) keep the figures exact."""

from __future__ import annotations

import sys

import pytest

from memtrim.engine import _engine

MONITORING = sys.version_info >= (3, 12)


@pytest.mark.skipif(not MONITORING, reason="sys.monitoring callbacks are 3.12+")
def test_callbacks_are_plain_callables_that_ignore_what_they_do_not_know():
    # registered with sys.monitoring; called with anything, they do nothing
    for name in ("tr_start", "tr_throw", "tr_line", "tr_return", "tr_instruction", "tr_end"):
        callback = getattr(_engine, name)
        assert callable(callback)
        assert callback() is None
        code = test_callbacks_are_plain_callables_that_ignore_what_they_do_not_know.__code__
        assert callback(code, 5) is None
    # not a code object: not profiled, nothing read from it
    assert _engine.tr_line("not code", 10**6) is None


def test_lines_above_256_exact(runner):
    # line numbers above 256 are boxed by CPython at each event (3.12+): the
    # fast paths read them in place and charge the box to no line
    pad = "\n" * 300
    tables = runner.profile_json(
        pad
        + """
@profile
def work(n):
    keep = []
    last = 0
    for i in range(n):
        last = i
        keep.append(bytearray(1000))
    return len(keep)
work(50)
"""
    )
    lines = tables["work"]
    first = min(n for n in lines if lines[n]["occurrences"])
    assert first > 256
    loop, add, append = first + 4, first + 5, first + 6  # first: the decorator line
    assert lines[loop]["occurrences"] == 51
    assert lines[add]["occurrences"] == 50
    assert lines[append]["occurrences"] == 50
    # `last = i` allocates nothing (i < 256: CPython's small ints)
    assert lines[add]["increment"] == 0
    assert lines[add]["peak_increment"] == 0
    # each bytearray(1000) is 56 bytes of object and 1001 of buffer, kept
    per = 56 + 1001
    assert lines[append]["increment"] >= 50 * per
    assert lines[append]["increment"] - 50 * per < 50 * 64  # the list's growth
