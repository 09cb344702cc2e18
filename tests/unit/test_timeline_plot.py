"""Plots from plain timelines: the series, the figures stated, and the files."""

from __future__ import annotations

import json
import re

import pytest

from memtrim.analysis.recording import loads
from memtrim.analysis.timeline import (
    MIB,
    Phase,
    Sample,
    Timeline,
    child_series,
    peak_of,
    samples_from_raw,
    within,
)
from memtrim.reporters import plot

SAMPLES = (
    Sample(0.0, 10 * MIB, 0),
    Sample(0.1, 40 * MIB, 25 * MIB, ((7, 5 * MIB),)),
    Sample(0.2, 30 * MIB, 15 * MIB, ((7, 30 * MIB), (9, MIB))),
    Sample(0.3, 12 * MIB, 1 * MIB),
)
TIMELINE = Timeline(
    samples=SAMPLES,
    phases=(Phase("load", 0.0, 0.15, 25 * MIB, 20 * MIB, 41 * MIB, True),),
    interval=0.1,
    pid=5,
    command=("app.py",),
    include_children=True,
    multiprocess=True,
    peak_rss=45 * MIB,
    exit_code=0,
    duration=0.3,
)


def test_samples_from_raw_orders_and_splits():
    raw = [
        (2_000_000_000, 5, ((100, 3), (300, 2), (200, 1))),
        (1_000_000_000, None, ((100, 4),)),
        (1_500_000_000, None, ()),  # the process was gone: skipped
    ]
    samples = samples_from_raw(raw, 1_000_000_000)
    assert samples == [Sample(0.0, 4, None), Sample(1.0, 3, 5, ((200, 1), (300, 2)))]


def test_peaks_windows_and_children():
    assert peak_of(SAMPLES, "rss").value == 40 * MIB
    assert peak_of(SAMPLES, "total").value == 61 * MIB  # 30 + 30 + 1 at 0.2 s
    assert peak_of(SAMPLES, "total").time == 0.2
    assert peak_of(SAMPLES, "heap").value == 25 * MIB
    assert peak_of((), "rss") is None
    assert [s.time for s in within(SAMPLES, 0.1, 0.2)] == [0.1, 0.2]
    assert child_series(SAMPLES) == {7: [(0.1, 5 * MIB), (0.2, 30 * MIB)], 9: [(0.2, MIB)]}


def test_series_follow_the_children_options():
    labels = [s.label for s in plot.series_of(TIMELINE)]
    assert labels == [
        "RSS, process 5",
        "RSS with children (same instants)",
        "child 7",
        "child 9",
        "heap allocated since start (exact)",
    ]
    alone = Timeline(samples=SAMPLES[:1], pid=5)
    assert [s.label for s in plot.series_of(alone)] == [
        "RSS, process 5",
        "heap allocated since start (exact)",
    ]


def test_summary_states_true_figures():
    summary = plot.summary(TIMELINE)
    assert summary["sampled_peak_mib"] == 61.0  # with children, same instant
    assert summary["kernel_peak_mib"] == 45.0
    assert summary["phases"][0]["peak_heap_mib"] == 25.0


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.png", "png"), ("a.SVG", "svg"), ("a.html", "html"), ("a.htm", "html")]
)
def test_format_of(name, fmt):
    assert plot.format_of(name) == fmt


def test_unknown_format():
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.html"):
        plot.format_of("a.pdf")


def test_png_and_svg():
    pytest.importorskip("matplotlib")
    png = plot.render(TIMELINE, "x.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = plot.render(TIMELINE, "x.svg").decode()
    assert "<svg" in svg and "peak with children 61.0 MiB at 0.20 s" in svg


def test_html_is_self_contained_and_carries_the_data():
    pytest.importorskip("matplotlib")
    page = plot.render(TIMELINE, "x.html").decode()
    assert "<svg" in page
    assert not re.search(r"<script[^>]+src=|<link|@import|url\(http", page)
    blob = re.search(
        r'<script type="application/json" id="memtrim-data">(.*?)</script>', page, re.S
    )
    data = json.loads(blob.group(1))
    assert loads(data["recording"]) == TIMELINE
    assert data["summary"]["kernel_peak_mib"] == 45.0
    assert "<td>load</td>" in page
