"""The processes of a --follow-fork run together: plain captures, known figures."""

from __future__ import annotations

from memtrim.run.capture import Capture
from memtrim.run.processes import combine

MIB = 2**20


def _capture(pid, timeline, peak, peak_time, duration, **meta):
    return Capture(
        meta={"pid": pid, "duration": duration, **meta},
        peak_bytes=peak,
        peak_time=peak_time,
        end_bytes=0,
        frames=[],
        threads=[],
        nodes=[],
        stacks=[],
        timeline=timeline,
    )


def test_workers_alive_together_add_up_less_what_they_inherited():
    # the parent holds 10 MiB from 0.5 s; two children forked at 1 s with those
    # 10 MiB (shared), each growing 100 MiB on top, one until 3 s, one until 2.5 s
    parent = _capture(1, [(0.0, 0, 0), (0.5, 10 * MIB, 0), (4.0, 10 * MIB, 0)], 10 * MIB, 0.5, 4)
    parent_before_fork = [(0.0, 0, 0), (0.5, 10 * MIB, 0)]  # inherited samples
    fork = {"forked_at": 1.0, "fork_level": 10 * MIB}
    a = _capture(
        2, [*parent_before_fork, (1.5, 110 * MIB, 0), (3.0, 10 * MIB, 0)], 110 * MIB, 1.5, 3.0,
        **fork,
    )  # fmt: skip
    b = _capture(
        3, [*parent_before_fork, (2.0, 60 * MIB, 0)], 110 * MIB, 2.2, 2.5, **fork
    )  # its exact peak fell between two samples
    result = combine(parent, [("out.2.memtrim", a), ("out.3.memtrim", b)])
    assert result["count"] == 2
    assert result["peak"] == 10 * MIB + 100 * MIB + 100 * MIB
    assert result["time"] == 2.2
    assert result["at_peak"] == [
        {"pid": 2, "heap": 100 * MIB, "file": "out.2.memtrim"},
        {"pid": 3, "heap": 100 * MIB, "file": "out.3.memtrim"},
        {"pid": 1, "heap": 10 * MIB, "file": ""},
    ]


def test_children_one_after_another_do_not_add_up():
    parent = _capture(1, [(0.0, 0, 0), (5.0, MIB, 0)], MIB, 5.0, 5)
    children = []
    for k in range(3):  # each holds 50 MiB from k+0.5 to its end at k+0.9
        child = _capture(
            10 + k, [(k + 0.5, 50 * MIB, 0)], 50 * MIB, k + 0.5, k + 0.9, forked_at=float(k)
        )
        children.append((f"out.{10 + k}.memtrim", child))
    result = combine(parent, children)
    assert result["peak"] == 50 * MIB
    assert [part["pid"] for part in result["at_peak"]] == [10, 1]  # the parent: 0 B then
    assert result["at_peak"][1]["heap"] == 0


def test_changes_at_the_same_moment_are_taken_together():
    # one child frees 40 MiB at the moment another allocates 40 MiB: never 80 MiB
    parent = _capture(1, [(0.0, 0, 0), (3.0, 0, 0)], 0, 0.0, 3)
    a = _capture(2, [(0.0, 40 * MIB, 0), (1.0, 0, 0)], 40 * MIB, 0.0, 2.0, forked_at=0.0)
    b = _capture(3, [(0.0, 0, 0), (1.0, 40 * MIB, 0)], 40 * MIB, 1.0, 2.0, forked_at=0.0)
    assert combine(parent, [("a", a), ("b", b)])["peak"] == 40 * MIB
