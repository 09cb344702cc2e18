"""track() and phase(): exact heap peaks and increments of blocks, nested, with phases."""

from __future__ import annotations

import os

import pytest

import memtrim
from memtrim.engine import hooks
from memtrim.timeline import _shared
from memtrim.timeline import session as timeline

MIB = 2**20
# bytearray(n) asks for its 56-byte header and n + 1 bytes of buffer; the
# rest of the slack is the interpreter's own small objects made in the block.
SLACK = 512


@pytest.fixture(autouse=True)
def hooks_come_off():
    before = hooks.is_installed()
    yield
    assert hooks.is_installed() == before, "a track() left the heap hooks installed"
    assert not timeline._ACTIVE, "a track() was left open"


def test_peak_of_a_200_mib_bytearray_is_its_size():
    with memtrim.track(interval=None) as t:
        data = bytearray(200 * MIB)
        del data
    assert 200 * MIB <= t.peak < 200 * MIB + SLACK
    assert abs(t.increment) < SLACK


def test_increment_is_what_stays():
    with memtrim.track(interval=None) as t:
        kept = bytearray(30 * MIB)
    assert 30 * MIB <= t.increment < 30 * MIB + SLACK
    assert 30 * MIB <= t.peak < 30 * MIB + SLACK
    del kept


def test_nested_blocks_have_their_own_peaks():
    with memtrim.track(interval=None) as outer:
        first = bytearray(40 * MIB)
        with memtrim.track(interval=None) as inner:
            second = bytearray(10 * MIB)
            del second
        del first
    # net of what the block frees of older blocks: a few bytes of the interpreter's
    assert 10 * MIB - 64 <= inner.peak < 10 * MIB + SLACK
    # the inner track's own bookkeeping (its sampler, its result) is made in
    # the outer block: about 1 KiB, more when one of memtrim's tables crosses a
    # resize in passing (2,077 B seen in the unit suite on 3.11)
    assert 50 * MIB - 64 <= outer.peak < 50 * MIB + 8 * SLACK
    # `inner` itself is still alive, and what memtrim's code grew in passing
    # (a cache's table crossing a resize: 2,155 B seen on 3.12 in the suite)
    assert abs(outer.increment) < 8 * SLACK


def test_phases_report_their_own_peaks():
    with memtrim.track(interval=None) as t:
        with t.phase("load"):
            a = bytearray(20 * MIB)
        memtrim.phase("compute")  # plain call: lasts until the next phase
        b = bytearray(5 * MIB)
        del b
        memtrim.phase("save")
        c = bytearray(1 * MIB)
        del a, c
    names = [p.name for p in t.phases]
    assert names == ["load", "compute", "save"]
    load, compute, save = t.phases
    assert 20 * MIB <= load.peak_heap < 20 * MIB + SLACK
    assert 20 * MIB <= load.increment < 20 * MIB + SLACK
    assert 5 * MIB <= compute.peak_heap < 5 * MIB + SLACK
    assert 1 * MIB <= save.peak_heap < 1 * MIB + SLACK
    assert load.end <= compute.start <= compute.end <= save.start <= save.end <= t.duration
    assert all(p.peak_rss is not None for p in t.phases)


def test_nested_scoped_phases_get_depths():
    with memtrim.track(interval=None) as t, memtrim.phase("outer"), memtrim.phase("inner"):
        pass
    depths = {p.name: p.depth for p in t.phases}
    assert depths == {"outer": 0, "inner": 1}


def test_phase_without_a_track_measures_itself():
    with memtrim.phase("alone") as handle:
        data = bytearray(3 * MIB)
        del data
    assert handle.ended
    assert 3 * MIB <= handle.peak < 3 * MIB + SLACK
    assert handle.result is not None and handle.result.name == "alone"


def test_decorator_tracks_each_call():
    @memtrim.track
    def allocate(n):
        return len(bytearray(n))

    @memtrim.track(interval=None)
    def allocate_again(n):
        return len(bytearray(n))

    assert allocate(2 * MIB) == 2 * MIB
    assert 2 * MIB <= allocate.last.peak < 2 * MIB + SLACK
    assert allocate.last.name.endswith("allocate")
    assert allocate_again(MIB) == MIB
    assert MIB <= allocate_again.last.peak < MIB + SLACK


def test_decorator_keeps_the_exception_and_the_figures():
    @memtrim.track(interval=None)
    def boom():
        data = bytearray(4 * MIB)
        raise KeyError(len(data))

    with pytest.raises(KeyError):
        boom()
    # the exception and its traceback are allocated in the block too
    assert 4 * MIB <= boom.last.peak < 4 * MIB + 4 * SLACK


def test_samples_and_timeline():
    with memtrim.track("named", interval=0.01) as t:
        data = bytearray(8 * MIB)
        del data
    assert len(t.samples) >= 2  # at least the first and the last
    assert t.samples[0].time <= t.samples[-1].time <= t.duration
    assert all(s.rss > 0 and s.heap is not None for s in t.samples)
    recorded = t.timeline(command=["x"])
    assert recorded.samples == tuple(t.samples)
    assert recorded.meta == {"name": "named"}
    assert t.peak_rss is not None and t.peak_rss >= max(s.rss for s in t.samples)


def test_current_peak_while_running():
    with memtrim.track(interval=None) as t:
        data = bytearray(6 * MIB)
        del data
        assert 6 * MIB <= t.current_peak() < 6 * MIB + SLACK
        assert t.running
    assert not t.running


def test_a_track_runs_once():
    t = memtrim.track(interval=None)
    with t:
        pass
    with pytest.raises(RuntimeError), t:
        pass


@pytest.mark.parametrize("interval", [0, -1, 1e-6, 10**6, float("nan"), float("inf"), "0.1", True])
def test_bad_interval(interval):
    with pytest.raises(ValueError, match="interval"):
        memtrim.track(interval=interval)


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_phase_name(name):
    with pytest.raises(ValueError, match="name"):
        memtrim.phase(name)


def test_phase_of_a_finished_track_is_refused():
    with memtrim.track(interval=None) as t:
        pass
    with pytest.raises(RuntimeError):
        t.phase("late")


def test_without_the_heap_hooks():
    with memtrim.track(interval=None, heap=False) as t, memtrim.phase("p") as handle:
        data = bytearray(MIB)
        del data
        assert handle.peak is None
    assert (t.peak, t.increment) == (None, None)
    assert t.phases[0].peak_heap is None
    assert all(s.heap is None for s in t.samples)
    assert t.peak_rss is not None
    assert "not measured" in repr(t)


def threads():
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
@pytest.mark.parametrize("interval", [0.05, None])
def test_past_64_open_the_error_leaves_nothing_behind(interval):
    @memtrim.track(interval=interval)
    def nest(n):
        return 0 if n == 0 else 1 + nest(n - 1)

    before = threads()
    assert nest(_shared.MAX_OPEN - 1) == _shared.MAX_OPEN - 1  # 64 open: fine
    with pytest.raises(RuntimeError, match="cannot start another track or phase: 64 are open"):
        nest(_shared.MAX_OPEN + 5)
    assert threads() == before  # no sampling thread left running
    assert not timeline._ACTIVE and not hooks.is_installed()  # (the fixture checks it too)
    alone = memtrim.phase("after")
    assert alone._owner is None  # attaches to no leftover track
    alone.end()
    with memtrim.track(interval=None) as t:
        data = bytearray(MIB)
        del data
    assert MIB <= t.peak < MIB + SLACK


def test_past_64_a_phase_leaves_nothing_behind():
    with memtrim.track(interval=None) as t:
        handles = []
        with pytest.raises(RuntimeError, match="64 are open"):
            for n in range(_shared.MAX_OPEN):
                handles.append(t.phase(f"p{n}").__enter__())
        assert len(handles) == _shared.MAX_OPEN - 1  # the track holds one watch
        for handle in reversed(handles):
            handle.end()
    assert len(t.phases) == _shared.MAX_OPEN - 1
    assert not _shared._HIGH_WATER._open  # no window left open


def test_a_plain_phase_in_a_with_phase_ends_with_it():
    with memtrim.track(interval=None) as t:
        with t.phase("a"):
            kept = bytearray(10 * MIB)
            with t.phase("b"):
                data = bytearray(20 * MIB)
                del data
            memtrim.phase("c")  # a child of "a": ends with it
            data = bytearray(5 * MIB)
            del data
        after = bytearray(3 * MIB)  # in no phase
        del after, kept
    phases = {p.name: p for p in t.phases}
    assert [(p.name, p.depth) for p in t.timeline().phases] == [("a", 0), ("b", 1), ("c", 1)]
    assert phases["c"].end <= phases["a"].end
    # (a plain phase's start may be followed by memtrim freeing a few temporaries)
    assert abs(phases["c"].peak_heap - 5 * MIB) < SLACK  # not the 3 MiB after "a"
    assert abs(phases["a"].peak_heap - 30 * MIB) < 2 * SLACK


def test_a_plain_phase_ends_its_plain_siblings_only():
    with memtrim.track(interval=None) as t:
        memtrim.phase("outer")
        with memtrim.phase("scoped"):  # ends "outer": phases are not nested in plain ones
            memtrim.phase("x")
            memtrim.phase("y")  # ends "x", its sibling
    assert [(p.name, p.depth) for p in t.timeline().phases] == [
        ("outer", 0),
        ("scoped", 0),
        ("x", 1),
        ("y", 1),
    ]
    ends = {p.name: p.end for p in t.phases}
    assert ends["outer"] <= ends["x"] <= ends["y"] <= ends["scoped"]


def test_peak_rss_is_the_block_size_within_2_percent():
    # RSS figures from the kernel against a block of known size, both ways
    with memtrim.track(interval=None) as t:
        data = bytearray(100 * MIB)  # bytearray() writes every byte: all of it resident
        del data
    grown = t.peak_rss - t.samples[0].rss
    assert t.peak_rss_exact
    assert abs(grown - 100 * MIB) <= 0.02 * 100 * MIB


def test_peak_rss_does_not_hold_an_earlier_peak():
    # the kernel's mark is reset when the block starts: a spike before it is not its peak
    spike = bytearray(150 * MIB)
    del spike
    with memtrim.track(interval=None) as t:
        pass
    assert t.peak_rss - t.samples[0].rss < 4 * MIB
    with memtrim.track(interval=None) as t, memtrim.phase("quiet") as quiet:
        spike = bytearray(150 * MIB)
        del spike
        quiet.end()
        with memtrim.phase("after") as after:
            pass
    assert abs(t.peak_rss - t.samples[0].rss - 150 * MIB) <= 0.02 * 150 * MIB
    assert after.peak_rss < quiet.peak_rss - 140 * MIB
