"""Plots from plain timelines: the series, the figures stated, and the files."""

from __future__ import annotations

import json
import re

import pytest

from memtrim.timeline.model import (
    MIB,
    Phase,
    Sample,
    Timeline,
    child_series,
    peak_of,
    samples_from_raw,
    within,
)
from memtrim.timeline.recording import loads
from memtrim.timeline.render import plot

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
    assert "<svg" in svg and "highest sample with children 61.0 MiB at 0.20 s" in svg


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


def spiking(window):
    # samples see 40 MiB at most; the kernel's mark proves 90 MiB between 0.1 and 0.2 s
    return Timeline(samples=SAMPLES, pid=5, interval=0.1, peak_rss=90 * MIB, peak_rss_window=window)


def test_the_true_peak_is_labelled_with_its_span():
    pytest.importorskip("matplotlib")
    assert plot.true_peak(spiking((0.1, 0.2))).window == (0.1, 0.2)
    svg = plot.render(spiking((0.1, 0.2)), "x.svg").decode()
    assert "true peak of process 5 90.0 MiB (kernel's mark), between 0.10 s and 0.20 s" in svg
    unknown = plot.render(spiking(None), "x.svg").decode()
    assert "true peak of process 5 90.0 MiB (kernel's mark; when, between samples, not" in unknown
    assert plot.summary(spiking((0.1, 0.2)))["true_peak_window"] == (0.1, 0.2)


def test_a_true_peak_at_or_below_the_highest_sample_is_not_drawn_twice():
    # the process's own highest sample is 40 MiB
    assert plot.true_peak(Timeline(samples=SAMPLES, pid=5, peak_rss=40 * MIB)) is None
    assert plot.true_peak(Timeline(samples=SAMPLES, pid=5, peak_rss=41 * MIB)).window is None


def test_phase_labels_stay_inside_the_axes_and_apart():
    pytest.importorskip("matplotlib")
    phases = tuple(
        Phase(name, start, end, MIB, 0, 41 * MIB, True, 0, 60 * MIB)
        for name, start, end in [
            ("first", 0.0, 0.01),
            ("second", 0.01, 0.02),  # too close to the first for both on one row
            ("at the right edge, with a long name", 0.29, 0.3),
        ]
    )
    timeline = Timeline(samples=SAMPLES, phases=phases, pid=5, duration=0.3)
    fig = plot.figure(timeline)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    box = ax.get_window_extent(renderer)
    labels = [t for t in ax.texts if "RSS peak" in t.get_text()]
    extents = [t.get_window_extent(renderer) for t in labels]
    assert len(extents) == 3
    for extent in extents:
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1 + 1
    assert not extents[0].overlaps(extents[1])
    assert "with children 60.0 MiB" in labels[0].get_text()
    # the labels sit above the curves
    lowest_label = min(e.y0 for e in extents)
    top_of_data = ax.transData.transform((0, 61))[1]  # the total with children
    assert top_of_data < lowest_label


def test_the_html_page_needs_no_matplotlib(monkeypatch):
    def missing():
        raise plot.PlotUnavailableError("plotting needs matplotlib")

    monkeypatch.setattr(plot, "_matplotlib", missing)  # as if it were not installed
    with pytest.raises(plot.PlotUnavailableError):
        plot.render(TIMELINE, "out.png")
    page = plot.render(TIMELINE, "out.html").decode()
    svg = page[page.index("<svg") : page.index("</svg>")]
    lines = re.findall(r'<polyline[^>]*points="([^"]*)"', svg)
    assert len(lines) == len(plot.series_of(TIMELINE))  # every series drawn
    assert all(points.split() for points in lines)
    samples = sum(len(line.times) for line in plot.series_of(TIMELINE))
    assert svg.count("<circle") >= samples  # few samples: each marked
    assert "time (s)" in svg and "memory (MiB)" in svg
    for phase in TIMELINE.phases:  # escaped, never raw markup from the program
        assert f"<title>{phase.name}</title>" not in svg or "<" not in phase.name
    assert '<script type="application/json" id="memtrim-data">' in page
