"""True peaks from the kernel's marks, on plain data: where a mark proves a peak, and the
combined peak of a process with its children."""

from __future__ import annotations

from memtrim.timeline.model import (
    LocatedPeak,
    MarkEvent,
    Sample,
    TruePeak,
    combined_peak,
    located_peaks,
    located_within,
    marks_from_raw,
    own_peak,
)

MIB = 2**20
TIMES = [0.0, 0.1, 0.2, 0.3]


def reads(*points):
    return [MarkEvent(t, hwm) for t, hwm in points]


def test_a_mark_that_rose_is_a_peak_between_the_two_reads():
    events = {7: reads((0.0, 10 * MIB), (0.1, 10 * MIB), (0.2, 50 * MIB), (0.3, 50 * MIB))}
    assert located_peaks(events, TIMES) == [LocatedPeak(7, 50 * MIB, 0.1, 0.2)]


def test_a_mark_that_did_not_rise_proves_nothing():
    # the mark never falls between resets: an unchanged one may hold an old peak
    events = {7: reads((0.0, 80 * MIB), (0.1, 80 * MIB), (0.2, 20 * MIB))}
    assert located_peaks(events, TIMES) == []


def test_a_reset_between_reads_makes_the_next_read_the_peak_of_that_span():
    events = {
        7: [
            MarkEvent(0.0, 80 * MIB),
            MarkEvent(0.01, None),  # reset right after the read
            MarkEvent(0.1, 20 * MIB),
            MarkEvent(0.2, 30 * MIB),
        ]
    }
    assert located_peaks(events, TIMES) == [
        LocatedPeak(7, 20 * MIB, 0.0, 0.1),
        LocatedPeak(7, 30 * MIB, 0.1, 0.2),  # rose
    ]


def test_a_process_first_seen_later_peaked_since_the_sample_before():
    events = {
        1: reads((0.0, 5 * MIB)),  # seen at the first sample: its mark holds its past
        9: reads((0.2, 70 * MIB)),  # new at 0.2: started after 0.1
    }
    assert located_peaks(events, TIMES) == [LocatedPeak(9, 70 * MIB, 0.1, 0.2)]


def test_a_reset_before_the_first_read_starts_its_span():
    events = {1: [MarkEvent(-0.001, None), MarkEvent(0.0, 12 * MIB)]}
    assert located_peaks(events, TIMES) == [LocatedPeak(1, 12 * MIB, -0.001, 0.0)]


def test_marks_from_raw_reads_and_resets():
    raw = [
        (1_000, None, ((1, 10),), ((1, 11, 0),)),
        (2_000, None, ((1, 10), (2, 5)), ((1, 11, 0), (2, 6, 2_500))),
        (3_000, None, ((1, 10),), None),  # no marks read
    ]
    assert marks_from_raw(raw, 1_000) == {
        1: [MarkEvent(0.0, 11), MarkEvent(1e-6, 11)],
        2: [MarkEvent(1e-6, 6), MarkEvent(1.5e-6, None)],
    }


# A parent (pid 1) and two children: 2 holds 40 MiB throughout, 3 spikes to 150 MiB
# between the samples at 0.1 and 0.2, which see it at 10 MiB.
SAMPLES = [
    Sample(0.0, 20 * MIB, None, ((2, 40 * MIB),)),
    Sample(0.1, 20 * MIB, None, ((2, 40 * MIB), (3, 10 * MIB))),
    Sample(0.2, 22 * MIB, None, ((2, 38 * MIB), (3, 10 * MIB))),
    Sample(0.3, 20 * MIB, None, ((2, 40 * MIB),)),
]


def test_combined_peak_is_the_spike_plus_what_the_others_held_at_both_ends():
    spike = LocatedPeak(3, 150 * MIB, 0.1, 0.2)
    peak = combined_peak(SAMPLES, [spike], pid=1)
    # 150 + the smaller readings of the others around it: 20 (parent) + 38 (child 2)
    assert peak == TruePeak(208 * MIB, 0.1, 0.2)
    # below the sum of the separate peaks, above the highest combined sample
    assert peak.value < (22 + 40 + 150) * MIB
    assert peak.value > max(s.total for s in SAMPLES)


def test_a_process_seen_at_one_end_only_adds_nothing():
    spike = LocatedPeak(2, 90 * MIB, 0.2, 0.3)  # 3 is gone at 0.3
    assert combined_peak(SAMPLES, [spike], pid=1) == TruePeak((90 + 20) * MIB, 0.2, 0.3)


def test_without_marks_the_combined_peak_is_the_highest_combined_sample():
    assert combined_peak(SAMPLES, [], pid=1) == TruePeak(70 * MIB, 0.1, 0.1)  # the first
    # the main process's own exact peak, alone, when higher
    assert combined_peak(SAMPLES, [], pid=1, exact=99 * MIB) == TruePeak(99 * MIB)


def test_own_peak_picks_the_highest_sample_mark_or_exact_figure():
    assert own_peak(SAMPLES, [], pid=1) == TruePeak(22 * MIB, 0.2, 0.2)
    located = [LocatedPeak(1, 30 * MIB, 0.0, 0.1), LocatedPeak(3, 150 * MIB, 0.1, 0.2)]
    assert own_peak(SAMPLES, located, pid=1) == TruePeak(30 * MIB, 0.0, 0.1)  # its own only
    assert own_peak(SAMPLES, located, pid=1, exact=31 * MIB) == TruePeak(31 * MIB)
    assert TruePeak(31 * MIB).window is None


def test_located_within_keeps_whole_spans_only():
    located = [LocatedPeak(1, 1, 0.0, 0.1), LocatedPeak(1, 2, 0.1, 0.2)]
    assert located_within(located, 0.05, 0.2) == [LocatedPeak(1, 2, 0.1, 0.2)]
