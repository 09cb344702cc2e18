"""Sampled stacks scaled to the exact per-line figures (run/calibrate.py)."""

from __future__ import annotations

from memtrim.run.calibrate import calibrate
from memtrim.run.capture import VIEWS, Counts, Node


def _node(parent, frame, peak=0, count=0, native=0, thread=0):
    return Node(parent, frame, thread, Counts(peak, count, native), Counts(), Counts(peak, count))


def _self(stacks, view="peak"):
    out = {}
    for node in stacks:
        c = node.view(view)
        if c.bytes:
            out.setdefault((node.frame, node.thread), 0)
            out[(node.frame, node.thread)] += c.bytes
    return out


def test_stacks_keep_their_shares_and_sum_to_the_exact_line():
    # exact: line 5 holds 1000 bytes in 10 blocks; root's own 40 bytes
    nodes = [_node(-1, -1, 40, 1), _node(0, 5, 1000, 10)]
    # sampled: line 5 reached from caller 1 (estimate 900) and caller 2 (300)
    stacks = [
        _node(-1, -1),
        _node(0, 1),
        _node(1, 5, 900, 9),
        _node(0, 2),
        _node(3, 5, 300, 3),
    ]
    calibrate(nodes, stacks, lambda: 99)
    assert stacks[2].peak.bytes + stacks[4].peak.bytes == 1000
    assert (stacks[2].peak.bytes, stacks[4].peak.bytes) == (750, 250)  # 3:1 kept
    assert stacks[2].peak.count + stacks[4].peak.count == 10
    assert stacks[0].peak.bytes == 40  # the root's own bytes, exact, though unsampled
    for view in VIEWS:
        assert sum(n.view(view).bytes for n in stacks) == sum(n.view(view).bytes for n in nodes)


def test_rounding_goes_to_the_largest_and_nothing_is_lost():
    nodes = [_node(-1, -1), _node(0, 5, 1001, 3)]
    stacks = [_node(-1, -1), _node(0, 1), _node(1, 5, 1, 1), _node(0, 2), _node(3, 5, 2, 1)]
    calibrate(nodes, stacks, lambda: 99)
    assert (stacks[2].peak.bytes, stacks[4].peak.bytes) == (333, 668)
    assert stacks[2].peak.count + stacks[4].peak.count == 3


def test_the_lines_no_sample_reached_are_summed_under_stack_not_sampled():
    nodes = [_node(-1, -1), _node(0, 5, 100, 1), _node(0, 6, 7, 1), _node(0, 7, 3, 1)]
    stacks = [_node(-1, -1), _node(0, 5, 100, 1)]
    calibrate(nodes, stacks, lambda: 99)
    (marker,) = [n for n in stacks if n.frame == 99]  # one node for all of them
    assert marker.parent == 0 and (marker.peak.bytes, marker.peak.count) == (10, 2)
    assert _self(stacks) == {(5, 0): 100, (99, 0): 10}
    assert sum(n.peak.bytes for n in stacks) == sum(n.peak.bytes for n in nodes)


def test_a_sampled_line_that_the_exact_figures_deny_goes_to_zero():
    nodes = [_node(-1, -1), _node(0, 5, 0, 0)]
    stacks = [_node(-1, -1), _node(0, 5, 300, 1)]
    calibrate(nodes, stacks, lambda: 99)
    assert stacks[1].peak.bytes == 0 and stacks[1].peak.count == 0


def test_c_frames_below_a_line_share_its_exact_bytes():
    nodes = [_node(-1, -1), _node(0, 5, 1000, 2, native=1000)]
    # line 5 -> C frame 8 (600 estimated) and C frame 9 (200)
    stacks = [_node(-1, -1), _node(0, 5), _node(1, 8, 600, 1, 600), _node(1, 9, 200, 1, 200)]
    calibrate(nodes, stacks, lambda: 99, is_c=lambda frame: frame >= 8)
    assert (stacks[2].peak.bytes, stacks[3].peak.bytes) == (750, 250)
    assert stacks[2].peak.native == 750


def test_threads_are_calibrated_apart():
    nodes = [
        _node(-1, -1),
        _node(0, 5, 100, 1),
        _node(-1, -1, thread=1),
        _node(2, 5, 50, 1, thread=1),
    ]
    stacks = [
        _node(-1, -1),
        _node(0, 5, 10, 1),
        _node(-1, -1, thread=1),
        _node(2, 5, 90, 1, thread=1),
    ]
    calibrate(nodes, stacks, lambda: 99)
    assert stacks[1].peak.bytes == 100 and stacks[3].peak.bytes == 50
