"""The engine's hooks for the advisor: memtrim's own work uncounted (``own``),
the node of a live object's block, the peak trigger, the high-water mark of a
call-tree node, and the walks the rules use (``untracked``, ``paths``)."""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
from collections.abc import Iterator

import pytest

from memtrim.engine import calltree, hooks, walks

MIB = 2**20
HERE = sys._getframe().f_code.co_filename  # this file, as the interpreter names it


@contextlib.contextmanager
def recording(native: bool = False) -> Iterator[None]:
    """A recording, from the hooks' handle to the cleared tree, whatever happens."""
    handle = hooks.acquire("test_engine_advisor_hooks", native=native)
    try:
        calltree.start(False, 0)
        try:
            yield
        finally:
            calltree.clear()
    finally:
        handle.release()


def next_line() -> int:
    """The number of the caller's next line."""
    return sys._getframe(1).f_lineno + 1


# ------------------------------------------------------------------ own()


@pytest.mark.parametrize("native", [False, True])
def test_what_memtrim_allocates_in_own_is_not_counted(native):
    with recording(native), calltree.own():
        level = hooks.level()
        mine = bytearray(10**6)
        assert hooks.level() - level == 0
        more = [bytearray(1000) for _ in range(100)]
        assert hooks.level() - level == 0
        # freeing a block that was never counted changes nothing either
        del mine, more
        assert hooks.level() - level == 0


@pytest.mark.parametrize("native", [False, True])
def test_what_own_frees_of_the_programs_is_still_subtracted(native):
    with recording(native):
        program = bytearray(10**6)  # the program's: counted
        size = sys.getsizeof(program)
        with calltree.own():
            level = hooks.level()
            del program
            assert level - hooks.level() == size


def test_a_block_made_in_own_and_freed_later_is_never_subtracted():
    with recording():
        with calltree.own():
            mine = bytearray(10**6)
        level = hooks.level()
        del mine
        # not lowered by its million bytes (the int `level` itself is counted)
        assert 0 <= hooks.level() - level <= 64


def test_own_nests_and_ends():
    with recording():
        with calltree.own():
            with calltree.own():
                level = hooks.level()
                inner = bytearray(10**6)
                assert hooks.level() == level
            # still inside the outer one
            level = hooks.level()
            outer = bytearray(10**6)
            assert hooks.level() == level
        # out of both: counted again
        level = hooks.level()
        counted = bytearray(10**6)
        grown = hooks.level() - level
        assert sys.getsizeof(counted) <= grown <= sys.getsizeof(counted) + 1024
        del inner, outer, counted


def test_own_ends_when_its_block_raises():
    with recording():
        with pytest.raises(ZeroDivisionError), calltree.own():
            1 / 0  # noqa: B018
        level = hooks.level()
        counted = bytearray(10**6)
        assert hooks.level() - level >= sys.getsizeof(counted)


def test_own_is_per_thread():
    with recording():
        held: list[bytearray] = []
        with calltree.own():
            level = hooks.level()
            worker = threading.Thread(target=lambda: held.append(bytearray(10**6)))
            worker.start()
            worker.join()
            # the other thread's block is the program's
            assert hooks.level() - level >= sys.getsizeof(held[0])
        held.clear()


# ------------------------------------------------------------------ block_nodes() / node_site()


def test_the_node_of_a_block_names_this_file_and_line():
    before = bytearray(10_000)  # before the recording: no node
    with recording():
        first = sys._getframe().f_code.co_firstlineno
        line = next_line()
        data = bytearray(10_000)
        nodes = calltree.block_nodes([data, before])
        assert nodes[0] >= 0
        assert nodes[1] == -1
        filename, qualname, first_line, lineno, parent = calltree.node_site(nodes[0])
        assert filename == HERE
        assert lineno == line
        assert qualname == "test_the_node_of_a_block_names_this_file_and_line"
        assert first_line == first
        assert isinstance(parent, int)


def test_objects_without_a_block_of_their_own_have_no_node():
    with recording():
        with calltree.own():
            mine = bytearray(10_000)  # memtrim's: never recorded
        nodes = calltree.block_nodes([5, None, True, (), mine])
        assert nodes == [-1, -1, -1, -1, -1]
        assert calltree.node_site(-1) is None
        assert calltree.node_site(10**9) is None
        assert calltree.block_nodes([]) == []
        assert calltree.block_nodes(()) == []
        with pytest.raises(TypeError):
            calltree.block_nodes(5)


def test_a_comprehensions_list_is_found_through_its_items():
    with recording():
        line = next_line()
        squares = [i * i for i in range(1000)]
        table = {str(i): i for i in range(100)}
        (node,) = calltree.block_nodes([squares])
        site = calltree.node_site(node)
        assert site is not None
        assert site[0] == HERE and site[3] == line
        (node,) = calltree.block_nodes([table])
        site = calltree.node_site(node)
        assert site is not None
        assert site[0] == HERE and site[3] == line + 1


def test_block_nodes_of_many_objects_in_order():
    with recording():
        lines = []
        objs = []
        for _ in range(3):
            lines.append(next_line())
            objs.append(bytearray(100))
        lines.append(next_line())
        objs.append(bytearray(200))
        nodes = calltree.block_nodes(objs)
        assert nodes[0] == nodes[1] == nodes[2]  # one line, one node
        assert [calltree.node_site(n)[3] for n in nodes] == lines


# ------------------------------------------------------------------ on_peak()


def test_the_peak_trigger_fires_once_from_the_main_thread_after_the_level():
    calls: list[tuple[int, int, int]] = []
    chunks: list[bytearray] = []
    with recording():
        try:
            at = hooks.level() + 5 * MIB + MIB // 2
            calltree.on_peak(
                at, lambda: calls.append((threading.get_ident(), hooks.peak(), len(chunks)))
            )
            for _ in range(10):
                chunks.append(bytearray(MIB))
            for _ in range(3):  # a few more bytecodes
                pass
            assert len(calls) == 1, calls
            ident, peak, made = calls[0]
            assert ident == threading.main_thread().ident
            assert peak >= at
            # the sixth megabyte crossed the level: called after it was allocated
            assert 5 <= made <= 7, made
        finally:
            calltree.on_peak(0, None)
            chunks.clear()


def test_the_peak_trigger_runs_in_the_main_thread_when_another_crosses():
    calls: list[int] = []
    held: list[bytearray] = []
    with recording():
        try:
            calltree.on_peak(hooks.level() + 4 * MIB, lambda: calls.append(threading.get_ident()))
            worker = threading.Thread(target=lambda: held.append(bytearray(8 * MIB)))
            worker.start()
            worker.join()
            for _ in range(3):
                pass
            assert calls == [threading.main_thread().ident]
        finally:
            calltree.on_peak(0, None)
            held.clear()


def test_a_disarmed_trigger_never_fires():
    calls: list[int] = []
    chunks: list[bytearray] = []
    with recording():
        try:
            calltree.on_peak(hooks.level() + MIB, lambda: calls.append(1))
            calltree.on_peak(0, None)
            calltree.on_peak(hooks.level() + MIB, lambda: calls.append(2))
            calltree.on_peak(hooks.level() + MIB, None)
            for _ in range(5):
                chunks.append(bytearray(MIB))
            for _ in range(3):
                pass
            assert calls == []
        finally:
            calltree.on_peak(0, None)
            chunks.clear()


def test_arming_again_replaces_the_callback():
    calls: list[str] = []
    chunks: list[bytearray] = []
    with recording():
        try:
            calltree.on_peak(hooks.level() + MIB, lambda: calls.append("first"))
            calltree.on_peak(hooks.level() + 2 * MIB, lambda: calls.append("second"))
            for _ in range(4):
                chunks.append(bytearray(MIB))
            for _ in range(3):
                pass
            assert calls == ["second"]
        finally:
            calltree.on_peak(0, None)
            chunks.clear()


def test_the_trigger_needs_a_callable():
    with recording(), pytest.raises(TypeError):
        calltree.on_peak(hooks.level() + MIB, 5)  # type: ignore[arg-type]


def test_an_exception_in_the_callback_is_swallowed():
    calls: list[int] = []
    chunks: list[bytearray] = []

    def failing() -> None:
        calls.append(1)
        raise ValueError("the callback's own problem")

    with recording():
        try:
            calltree.on_peak(hooks.level() + MIB, failing)
            went_on = 0
            for _ in range(4):
                chunks.append(bytearray(MIB))
                went_on += 1
            for _ in range(3):
                pass
            assert calls == [1]
            assert went_on == 4
            assert sys.exc_info() == (None, None, None)
        finally:
            calltree.on_peak(0, None)
            chunks.clear()


def test_a_keyboard_interrupt_in_the_callback_goes_into_the_program():
    chunks: list[bytearray] = []

    def interrupt() -> None:
        raise KeyboardInterrupt

    with recording():
        try:
            calltree.on_peak(hooks.level() + MIB, interrupt)
            with pytest.raises(KeyboardInterrupt):
                for _ in range(4):
                    chunks.append(bytearray(MIB))
                for _ in range(3):
                    pass
            assert len(chunks) < 4  # it stopped the loop
        finally:
            calltree.on_peak(0, None)
            chunks.clear()


def test_the_trigger_goes_with_the_recording():
    calls: list[int] = []
    with recording():
        calltree.on_peak(hooks.level() + MIB, lambda: calls.append(1))
    # cleared: a new recording does not inherit it
    with recording():
        chunks = [bytearray(MIB) for _ in range(3)]
        for _ in range(3):
            pass
        del chunks
    assert calls == []


# ------------------------------------------------------------------ the high-water mark


def build_and_free() -> int:
    line = next_line()
    data = [None] * 10**6
    del data
    return line


def churn() -> int:
    line = 0
    for _ in range(3):
        line = next_line()
        block = bytearray(10**6)
        del block
    return line


def _line_stats(snap: dict, qualname: str, line: int) -> list[tuple[int, ...]]:
    slots = snap["slots"]
    return [
        stats
        for (_parent, slot, lineno), stats in zip(snap["nodes"], snap["stats"], strict=True)
        if slot >= 0 and slots[slot][0] == HERE and slots[slot][1] == qualname and lineno == line
    ]


def test_the_tenth_figure_is_the_nodes_high_water_mark():
    with recording():
        line = build_and_free()
        snap = calltree.snapshot()
    stats = _line_stats(snap, "build_and_free", line)
    assert stats, "no node for the line"
    assert all(len(s) == 10 for s in snap["stats"])
    assert sum(s[0] for s in stats) == 0  # nothing live now
    high = sum(s[9] for s in stats)
    # the item array (8 bytes a slot) was live at once; the list object itself
    # may come from the interpreter's free list (allocated before the recording)
    assert 8 * 10**6 <= high <= 8 * 10**6 + sys.getsizeof([])
    assert sum(s[2] for s in stats) == high  # allocated once: the total is the mark


def test_the_high_water_mark_is_not_the_total():
    with recording():
        line = churn()
        snap = calltree.snapshot()
    stats = _line_stats(snap, "churn", line)
    size = sys.getsizeof(bytearray(10**6))
    assert sum(s[0] for s in stats) == 0
    assert sum(s[2] for s in stats) == 3 * size  # allocated three times
    assert sum(s[9] for s in stats) == size  # never two at once


def test_line_figures_from_a_real_snapshot():
    from memtrim.advice.session import figures_from_snapshot

    with recording():
        line = build_and_free()
        snap = calltree.snapshot()
    figures = [
        f for f in figures_from_snapshot(snap) if f.line.filename == HERE and f.line.lineno == line
    ]
    assert len(figures) == 1
    assert figures[0].at_end == 0
    assert 8 * 10**6 <= figures[0].high_water <= 8 * 10**6 + sys.getsizeof([])
    assert figures[0].line.source == "data = [None] * 10**6"


# ------------------------------------------------------------------ walks.untracked() / paths()


def test_untracked_finds_each_object_once():
    s1 = "".join(["ab", "cd"])
    s2 = "".join(["ef", "gh"])
    s3 = "".join(["ij", "kl"])
    inner = {1: s3, 2: 2.5}  # atoms only: the GC does not track it
    assert not gc.is_tracked(inner)
    first = [s1, s1, s2, inner, 7, 1.5]
    second = [s1, s2]
    assert gc.is_tracked(first) and gc.is_tracked(second)
    found = walks.untracked([first, second], (str,))
    assert sorted(map(id, found)) == sorted({id(s1), id(s2), id(s3)})
    assert all(type(o) is str for o in found)
    dicts = walks.untracked([first, second], (dict,))
    assert len(dicts) == 1 and dicts[0] is inner
    assert walks.untracked([first], (bytes,)) == []
    assert walks.untracked([], (str,)) == []


def test_untracked_does_not_enter_tracked_objects():
    s = "".join(["x", "y", "z"])
    nested = [[s]]  # the inner list is tracked: a walk of every tracked object meets it itself
    assert walks.untracked([nested], (str,)) == []
    assert walks.untracked([nested, nested[0]], (str,)) == [s]


def test_untracked_leaves_reference_counts_alone():
    s = "".join(["p", "q"])
    container = [s, s]
    before = sys.getrefcount(s), sys.getrefcount(container)
    found = walks.untracked([container], (str,))
    assert found == [s]
    del found
    assert (sys.getrefcount(s), sys.getrefcount(container)) == before


class Box:
    pass


def test_paths_give_a_chain_per_target_and_none_when_unreachable():
    a, b, c = Box(), Box(), Box()
    middle = [a]
    holder = {"x": middle, "y": b}
    counts = [sys.getrefcount(o) for o in (a, b, c, holder, middle)]
    chains = walks.paths([holder], [a, b, c], [])
    assert len(chains) == 3
    assert chains[0] is not None and chains[0][0] is holder and chains[0][-1] is a
    assert [id(o) for o in chains[0]] == [id(holder), id(middle), id(a)]
    assert chains[1] is not None and [id(o) for o in chains[1]] == [id(holder), id(b)]
    assert chains[2] is None
    del chains
    assert [sys.getrefcount(o) for o in (a, b, c, holder, middle)] == counts


def test_paths_never_enter_what_is_skipped():
    a = Box()
    middle = [a]
    holder = {"x": middle}
    assert walks.paths([holder], [a], [middle]) == [None]
    other = (a,)
    roots = [holder, other]
    chains = walks.paths(roots, [a], [middle])
    assert chains[0] is not None and [id(o) for o in chains[0]] == [id(other), id(a)]


def test_paths_of_the_roots_themselves():
    a = Box()
    chains = walks.paths([a], [a], [])
    assert chains == [[a]]
