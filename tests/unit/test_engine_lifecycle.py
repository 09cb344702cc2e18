"""Who owns the engine's process-wide machinery, and that it goes when let go."""

from __future__ import annotations

import gc
import sys

import pytest

from memtrim.engine import _testing as testing
from memtrim.engine import calltree, hooks, load, tracer

engine = load()
OBJ = 2


# ------------------------------------------------------------------ handles


def test_the_last_handle_takes_the_hooks_off():
    assert not hooks.is_installed()
    first = hooks.acquire("first")
    second = hooks.acquire("second")
    assert hooks.holders()[-2:] == ["first", "second"]
    second.release()
    assert hooks.is_installed()  # the earlier handle keeps them
    first.release()
    assert not hooks.is_installed()
    first.release()  # idempotent
    assert not hooks.is_installed() and not first.held


def test_a_handle_is_a_context_manager():
    with hooks.acquire("block") as handle:
        assert hooks.is_installed() and handle.held
    assert not hooks.is_installed() and not handle.held


def test_no_permanent_install_is_left():
    assert not hasattr(hooks, "ensure_installed")


# ------------------------------------------------------------------ call tree


def test_a_second_recording_raises_instead_of_erasing_the_first():
    with hooks.acquire("test"):
        calltree.start(False, 0)
        try:
            kept = bytearray(100_000)
            with pytest.raises(RuntimeError, match="already running"):
                calltree.start(True, 0)
            assert calltree.is_recording()
            calltree.stop()
            data = calltree.snapshot()
        finally:
            calltree.clear()
        del kept
    assert not calltree.is_recording()
    live = sum(stat[0] for stat in data["stats"])
    assert live >= 100_000  # the first recording's data survived the attempt
    assert data["exact"] == 0


def test_recording_needs_the_hooks():
    assert not hooks.is_installed()
    with pytest.raises(RuntimeError, match="heap hooks"):
        calltree.start(False, 0)
    assert not calltree.is_recording()


def test_the_recorder_listens_only_while_it_records():
    with hooks.acquire("test"):
        assert engine.heap_listeners() == 0
        calltree.start(False, 0)
        assert engine.heap_listeners() == 1
        calltree.stop()
        assert engine.heap_listeners() == 0
        calltree.stop()  # no-op
        calltree.start(True, 0)  # a stopped recording can be replaced
        calltree.clear()
        assert engine.heap_listeners() == 0 and not calltree.is_recording()


@pytest.mark.parametrize("record", [False, True])
def test_figures_are_the_same_with_and_without_a_listener(record):
    with hooks.acquire("test"):
        if record:
            calltree.start(False, 4096)
        try:
            assert engine.heap_listeners() == int(record)
            for size, resize in ((100, 70_000), (70_000, 3), (3 * 10**6, 100)):
                assert testing.test_roundtrip(OBJ, size, resize) == (size, resize - size, -resize)
        finally:
            calltree.clear()


def test_a_new_recording_is_never_handed_the_last_ones_ids():
    """Stopping a recording wipes the ids it gave (only the shadow map's
    leaves it touched are visited): blocks it saw are unknown to the next,
    and their frees there subtract from no node."""
    with hooks.acquire("test"):
        calltree.start(False, 0)
        try:
            # small blocks over many leaves (64 KiB of address each) and big ones
            kept = [bytearray(300) for _ in range(5_000)] + [bytearray(200_000) for _ in range(3)]
            assert all(node > 0 for node in calltree.block_nodes(kept))
        finally:
            calltree.clear()
        calltree.start(False, 0)
        try:
            assert calltree.block_nodes(kept) == [-1] * len(kept)
            fresh = bytearray(4_000)
            (node,) = calltree.block_nodes([fresh])
            del kept
            calltree.stop()
            data = calltree.snapshot()
        finally:
            calltree.clear()
    assert node > 0
    assert all(stat[0] >= 0 for stat in data["stats"])  # no node lost the old bytes
    assert data["stats"][node][0] == 4_000 + 57  # bytearray(n): 56 + n + 1 bytes


def test_the_test_helpers_are_not_in_the_production_engine():
    for name in ("test_alloc", "test_free", "test_realloc", "test_roundtrip"):
        assert not hasattr(engine, name)
        assert hasattr(testing, name)


# ------------------------------------------------------------------ tracer


def test_a_freed_table_is_gone():
    table = tracer.new_table(1)
    assert tracer.live_tables() >= 1
    tracer.free_table(table)
    tracer.free_table(table)  # idempotent
    with pytest.raises(ValueError):
        engine.table_stats(table)
    assert engine.tables_live() == (0, 0, 0)


def _allocating(n):
    block = bytearray(n)
    return len(block)


def test_the_line_profiler_used_once_leaves_nothing():
    from memtrim.lines.session import LineProfiler

    assert not hooks.is_installed()
    prof = LineProfiler()
    wrapped = prof(_allocating)
    assert hooks.is_installed()
    wrapped(2**20)
    prof.release()
    assert not hooks.is_installed()  # released: the hooks come off
    (table,) = prof.tables()  # and the table stays readable
    row = next(r for r in table.lines if r.lineno == _allocating.__code__.co_firstlineno + 1)
    assert row.increment == 2**20 + 57  # bytearray(n): 56 + n + 1 bytes, still live
    del prof, wrapped, table, row
    gc.collect()
    assert tracer.live_tables() == 0
    assert engine.tables_live() == (0, 0, 0)  # code infos and extras freed too
    assert tracer.tool_id() is None
    assert not tracer._folds and not tracer._function_folds
    if sys.version_info >= (3, 12):
        assert "memtrim" not in [sys.monitoring.get_tool(t) for t in range(6)]


def test_a_dropped_line_profiler_lets_go():
    from memtrim.lines.session import LineProfiler

    prof = LineProfiler()
    prof.add_function(_allocating)
    assert hooks.is_installed()
    del prof
    gc.collect()
    assert not hooks.is_installed()
    assert engine.tables_live() == (0, 0, 0)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is Python 3.12+")
def test_the_monitoring_tool_id_is_given_back():
    table = tracer.new_table(_allocating.__code__.co_firstlineno)
    tracer.register(_allocating.__code__, table)
    tool = tracer.tool_id()
    assert tool is not None and sys.monitoring.get_tool(tool) == "memtrim"
    _allocating(10)
    tracer.free_table(table)
    assert tracer.tool_id() is None
    assert sys.monitoring.get_tool(tool) is None


def test_memit_holds_the_hooks_only_while_it_measures():
    from memtrim.ipython import measure

    result = measure(compile("x = bytearray(3 * 2**20)", "<memit>", "exec"), {})
    assert 3 * 2**20 <= result.increment_bytes <= 3 * 2**20 + 1024
    assert not hooks.is_installed()
