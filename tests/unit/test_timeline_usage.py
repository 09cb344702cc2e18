"""memory_usage() on plain data: what proc means, and the shapes of its results."""

from __future__ import annotations

import os

import pytest

import memtrim
from memtrim.timeline import _usage
from memtrim.timeline.model import Sample, TruePeak

MIB = 2**20


def f(*args, **kwargs):
    return args, kwargs


@pytest.mark.parametrize(
    ("proc", "target"),
    [
        (f, ("call", f, (), {})),
        ((f,), ("call", f, (), {})),
        ((f, [1, 2]), ("call", f, (1, 2), {})),
        ((f, (1,), {"k": 2}), ("call", f, (1,), {"k": 2})),
        (-1, ("pid", -1)),
        (4242, ("pid", 4242)),
        ("4242", ("pid", 4242)),  # memory_profiler: "an integer/string representing a PID"
        (" 17 ", ("pid", 17)),
        ("prog --x 'a b'", ("command", ["prog", "--x", "a b"])),
        (["prog", "1"], ("command", ["prog", "1"])),
    ],
)
def test_what_proc_means(proc, target):
    assert _usage.parse_target(proc) == target


@pytest.mark.parametrize(
    ("proc", "message"),
    [
        (True, "got True"),
        (False, "got False"),
        ((f, 1), "args must be a tuple or a list, got 1"),
        ((f, "ab"), "args must be a tuple or a list"),
        ((f, (), [1]), "kwargs must be a dict"),
        ((f, (), {1: 2}), "kwargs must be a dict"),
        ((f, (), {}, 4), r"\(f,\), \(f, args\) or \(f, args, kwargs\)"),
        ("", "empty"),
        ("  ", "empty"),
        ([], "got \\[\\]"),
        (1.5, "got 1.5"),
        ("٤٢", "cannot start"),  # Arabic-Indic digits are not a PID
    ],
)
def test_bad_proc_is_a_value_error(proc, message):
    with pytest.raises(ValueError, match=message):
        memtrim.memory_usage(proc)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_max_iterations(value):
    with pytest.raises(ValueError, match="max_iterations"):
        memtrim.memory_usage(f, max_iterations=value)


@pytest.mark.parametrize("proc", [os.getppid(), ["true"], "true", "4242"])
def test_tracemalloc_is_for_this_process(proc):
    with pytest.raises(ValueError, match=r"tracemalloc.*this process"):
        memtrim.memory_usage(proc, backend="tracemalloc")


def test_tracemalloc_without_children():
    with pytest.raises(ValueError, match="without include_children"):
        memtrim.memory_usage(f, backend="tracemalloc", include_children=True)


def observed(samples, own=None, total=None):
    return _usage._Observed(list(samples), 1000.0, 7, own, total)


# child 8 runs from 0.1 to 0.2, child 9 from 0.2 on: 9's column must not move to 8's
SAMPLES = [
    Sample(0.0, 10 * MIB),
    Sample(0.1, 10 * MIB, None, ((8, 4 * MIB),)),
    Sample(0.2, 11 * MIB, None, ((8, 4 * MIB), (9, 2 * MIB))),
    Sample(0.3, 10 * MIB, None, ((9, 3 * MIB),)),
]


def test_multiprocess_columns_keep_their_child():
    usage = _usage._shape(observed(SAMPLES), False, True, False, False)
    assert usage == [[10.0, 0.0, 0.0], [10.0, 4.0, 0.0], [11.0, 4.0, 2.0], [10.0, 0.0, 3.0]]
    assert usage.pids == (7, 8, 9)
    assert isinstance(usage, list)


def test_multiprocess_columns_in_first_seen_order():
    later_first = [Sample(0.0, MIB, None, ((50, MIB),)), Sample(0.1, MIB, None, ((3, MIB),))]
    usage = _usage._shape(observed(later_first), True, True, True, False)
    assert usage.pids == (7, 50, 3)
    assert usage[1] == [(2.0, 1000.1), 0.0, 1.0]  # with children: the total, stamped


def test_max_usage_is_the_true_peak_and_its_time():
    seen = observed(SAMPLES, own=TruePeak(40 * MIB, 0.1, 0.2), total=TruePeak(50 * MIB, 0.2, 0.2))
    assert _usage._shape(seen, False, False, False, True) == 40.0
    assert _usage._shape(seen, False, False, True, True) == (40.0, 1000.2)
    assert _usage._shape(seen, True, False, True, True) == (50.0, 1000.2)
    assert _usage._shape(observed([]), False, False, False, True) == -1.0


# ------------------------------------------------ the true peak in the series


def _observed(samples, own=None, total=None):
    from memtrim.timeline._usage import _Observed

    return _Observed(samples, 1000.0, 1, own, total)


def test_a_peak_between_two_samples_goes_in_between():
    from memtrim.timeline._usage import with_true_peak
    from memtrim.timeline.model import Sample, TruePeak

    samples = [Sample(0.0, 100), Sample(1.0, 110), Sample(2.0, 100)]
    got = with_true_peak(_observed(samples, own=TruePeak(500, 1.0, 2.0)), False)
    assert [(s.time, s.rss) for s in got] == [(0.0, 100), (1.0, 110), (1.5, 500), (2.0, 100)]
    # a peak a sample already shows, or none at all: the samples as they are
    assert with_true_peak(_observed(samples, own=TruePeak(110, 1.0, 1.0)), False) == samples
    assert with_true_peak(_observed(samples), False) == samples


def test_a_peak_whose_time_is_not_known_goes_mid_watch():
    from memtrim.timeline._usage import with_true_peak
    from memtrim.timeline.model import Sample, TruePeak

    samples = [Sample(0.0, 100), Sample(4.0, 100)]
    got = with_true_peak(_observed(samples, own=TruePeak(300)), False)
    assert [(s.time, s.rss) for s in got] == [(0.0, 100), (2.0, 300), (4.0, 100)]


def test_with_children_the_point_adds_up_to_the_combined_peak():
    from memtrim.timeline._usage import with_true_peak
    from memtrim.timeline.model import Sample, TruePeak

    samples = [Sample(0.0, 100, None, ((7, 50),)), Sample(1.0, 100, None, ((7, 30),))]
    got = with_true_peak(_observed(samples, total=TruePeak(1000, 0.0, 1.0)), True)
    point = got[1]
    assert point.time == 0.5 and point.total == 1000
    assert point.children == ((7, 30),)  # the lower of the child's two readings
    assert point.rss == 970
