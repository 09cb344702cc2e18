"""Draw a :class:`~memtrim.timeline.model.Timeline`: PNG, SVG, or an offline HTML page.

matplotlib (the ``plot`` extra) draws; it is imported only when a plot is
made, through its object API (no pyplot, no global backend switch). The HTML
page embeds the chart as inline SVG and the data as JSON: it needs no network.
"""

from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass
from typing import Any

from memtrim.model.units import MIB, mib, script_json
from memtrim.timeline.model import (
    Phase,
    Timeline,
    TruePeak,
    child_series,
    peak_of,
    to_mib,
)
from memtrim.timeline.recording import dumps
from memtrim.timeline.render.svg import chart

FORMATS = ("png", "svg", "html")
_PHASE_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


class PlotUnavailableError(ImportError):
    """matplotlib is not installed."""


@dataclass(frozen=True, slots=True)
class Series:
    """One line of the chart: label, times (s) and values (MiB)."""

    label: str
    times: tuple[float, ...]
    values: tuple[float, ...]
    style: str = "main"  # main | total | child | heap


def format_of(path: str) -> str:
    """``png``, ``svg`` or ``html`` from the file name, or :class:`ValueError`."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    fmt = "html" if suffix == "htm" else suffix
    if fmt not in FORMATS:
        raise ValueError(f"cannot tell the format of {path!r}: name it .png, .svg or .html")
    return fmt


def series_of(timeline: Timeline) -> list[Series]:
    """The lines to draw, as plain data."""
    samples = timeline.samples
    times = tuple(s.time for s in samples)
    lines = [Series(f"RSS, process {timeline.pid}", times, tuple(to_mib(s.rss) for s in samples))]
    if timeline.has_children and (timeline.include_children or not timeline.multiprocess):
        values = tuple(to_mib(s.total) for s in samples)
        lines.append(Series("RSS with children (same instants)", times, values, "total"))
    if timeline.multiprocess:
        for pid, points in child_series(samples).items():
            lines.append(
                Series(
                    f"child {pid}",
                    tuple(t for t, _ in points),
                    tuple(to_mib(v) for _, v in points),
                    "child",
                )
            )
    if timeline.has_heap:
        heap = [(s.time, s.heap) for s in samples if s.heap is not None]
        lines.append(
            Series(
                "heap allocated since start (exact)",
                tuple(t for t, _ in heap),
                tuple(to_mib(v) for _, v in heap),
                "heap",
            )
        )
    return lines


def _peak_series_key(timeline: Timeline) -> str:
    return "total" if timeline.has_children and timeline.include_children else "rss"


def true_peak(timeline: Timeline) -> TruePeak | None:
    """The true peak of the drawn main curve (the kernel's marks), when above
    its highest sample: value and the span it lies in (``None``: not known)."""
    key = _peak_series_key(timeline)
    sampled = peak_of(timeline.samples, key)
    if key == "total":
        value, window = timeline.peak_total, timeline.peak_total_window
    else:
        value, window = timeline.peak_rss, timeline.peak_rss_window
    if value is None or (sampled is not None and value <= sampled.value):
        return None
    after, before = window if window is not None else (None, None)
    return TruePeak(value, after, before)


def summary(timeline: Timeline) -> dict[str, Any]:
    """The figures the chart states, as plain data (also embedded in the HTML)."""
    key = _peak_series_key(timeline)
    sampled = peak_of(timeline.samples, key)
    true = true_peak(timeline)
    return {
        "peak_series": "RSS with children" if key == "total" else "RSS",
        "sampled_peak_mib": None if sampled is None else to_mib(sampled.value),
        "sampled_peak_time": None if sampled is None else sampled.time,
        "kernel_peak_mib": None if timeline.peak_rss is None else to_mib(timeline.peak_rss),
        "true_peak_mib": None if true is None else to_mib(true.value),
        "true_peak_window": None if true is None else true.window,
        "peak_with_children_mib": (
            None if timeline.peak_total is None else to_mib(timeline.peak_total)
        ),
        "samples": len(timeline.samples),
        "duration": timeline.length,
        "exit_code": timeline.exit_code,
        "phases": [
            {
                "name": p.name,
                "start": p.start,
                "end": p.end,
                "peak_heap_mib": None if p.peak_heap is None else to_mib(p.peak_heap),
                "peak_rss_mib": None if p.peak_rss is None else to_mib(p.peak_rss),
                "peak_with_children_mib": None if p.peak_total is None else to_mib(p.peak_total),
            }
            for p in timeline.phases
        ],
    }


# ------------------------------------------------------------------ matplotlib


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError(
            "plotting needs matplotlib: pip install 'memtrim[plot]'"
        ) from None
    return Figure, FigureCanvasAgg


def figure(timeline: Timeline) -> Any:
    """A matplotlib ``Figure`` of the timeline."""
    figure_class, canvas_class = _matplotlib()
    fig = figure_class(figsize=(10, 5.5), dpi=100, layout="constrained")
    canvas_class(fig)  # a renderer, to measure the labels
    ax = fig.add_subplot()
    lines = series_of(timeline)
    _draw_series(ax, lines)
    top = max((v for line in lines for v in line.values), default=0.0)
    top = max(top, _draw_peaks(ax, timeline))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("memory (MiB)")
    ax.set_title(_title(timeline), fontsize=11)
    ax.set_xlim(0, max(timeline.length, 1e-3))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=3, fontsize=8, frameon=False)
    zone = _draw_phases(ax, timeline)  # the share of the height the labels take
    ax.set_ylim(0, max(top, 1e-3) * 1.06 / max(1.0 - zone, 0.3))
    return fig


_STYLES = {
    "main": {"color": "#1f3b73", "linewidth": 1.8},
    "total": {"color": "#8c1c13", "linewidth": 1.4},
    "child": {"linewidth": 0.9, "alpha": 0.8},
    "heap": {"color": "#2a9d8f", "linewidth": 1.2, "linestyle": "--"},
}
_PEAK = "#d62728"


def _draw_series(ax: Any, lines: list[Series]) -> None:
    for line in lines:
        marker = "." if len(line.times) <= 60 else None
        ax.plot(line.times, line.values, label=line.label, marker=marker, **_STYLES[line.style])


def _phase_label(phase: Phase) -> str:
    label = phase.name
    if phase.peak_rss is not None:
        label += f"\nRSS peak {mib(phase.peak_rss)}"
    if phase.peak_total is not None:
        label += f"\nwith children {mib(phase.peak_total)}"
    if phase.peak_heap is not None:
        label += f"\nheap +{mib(phase.peak_heap)}"
    return label


def _draw_phases(ax: Any, timeline: Timeline) -> float:
    """Shade each phase and label it at its start, or against the right edge
    when it would not fit; labels that would overlap go one row lower. Phases
    of the same name (the calls of one ``@profile`` function under ``memtrim
    record``) share a colour.
    Returns the share of the axes' height the label rows take."""
    if not timeline.phases:
        return 0.0
    renderer = ax.figure.canvas.get_renderer()
    ax.figure.canvas.draw()  # lay out first, so that the axes' size is final
    box = ax.get_window_extent(renderer)
    left, right = ax.get_xlim()
    placed: dict[int, list[tuple[float, float]]] = {}  # row -> [(x0, x1)] in axes fractions
    lowest = 0.0
    colours: dict[str, str] = {}  # one per name: the calls of one function share it
    for phase in timeline.phases:
        colour = colours.setdefault(phase.name, _PHASE_COLOURS[len(colours) % len(_PHASE_COLOURS)])
        ax.axvspan(phase.start, phase.end, color=colour, alpha=0.13, linewidth=0)
        for edge in (phase.start, phase.end):  # where it starts and ends, as mprof's brackets
            ax.axvline(edge, color=colour, alpha=0.5, linewidth=0.8, linestyle=":")
        text = ax.text(
            0,
            1,
            " " + _phase_label(phase).replace("\n", "\n "),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=7.5,
            color=colour,
        )
        extent = text.get_window_extent(renderer)
        width, height = extent.width / box.width, (extent.height + 3) / box.height
        # a margin for the SVG's own rounding of text widths
        x = min(max((phase.start - left) / (right - left), 0.0), max(0.985 - width, 0.0))
        row = phase.depth
        while any(x < b + 0.005 and a < x + width for a, b in placed.get(row, [])):
            row += 1
        placed.setdefault(row, []).append((x, x + width))
        y = 0.99 - row * height
        text.set_position((x, y))
        lowest = max(lowest, 1.0 - (y - height))
    return lowest


def _draw_peaks(ax: Any, timeline: Timeline) -> float:
    """Mark the highest sample and, when higher, the true peak; returns the
    highest value drawn (MiB)."""
    key = _peak_series_key(timeline)
    sampled = peak_of(timeline.samples, key)
    right = max(timeline.length, 1e-3)
    top = 0.0
    if sampled is not None:
        top = to_mib(sampled.value)
        ax.plot([sampled.time], [top], marker="v", color=_PEAK, markersize=9, linestyle="")
        what = "highest sample with children" if key == "total" else "highest sample"
        text = f"{what} {mib(sampled.value)} at {sampled.time:.2f} s"
        _note(ax, text, sampled.time, top, right)
    true = true_peak(timeline)
    if true is None:
        return top
    height = to_mib(true.value)
    whose = "with children" if key == "total" else f"of process {timeline.pid}"
    if true.window is None:
        ax.axhline(height, color=_PEAK, linestyle=":", linewidth=1.2)
        text = (
            f"true peak {whose} {mib(true.value)} (kernel's mark; when, between samples, not known)"
        )
        _note(ax, text, 0.0, height, right)
        return max(top, height)
    after, before = (min(max(t, 0.0), right) for t in true.window)
    ax.axvspan(after, before, color=_PEAK, alpha=0.12, linewidth=0)
    ax.plot([after, before], [height, height], color=_PEAK, linewidth=3, solid_capstyle="butt")
    text = f"true peak {whose} {mib(true.value)} (kernel's mark), "
    text += f"between {after:.2f} s and {before:.2f} s"
    _note(ax, text, before, height, right)
    return max(top, height)


def _note(ax: Any, text: str, x: float, y: float, right: float) -> None:
    """Write ``text`` beside the point, leftwards when it is in the right half."""
    leftwards = x > right / 2
    ax.annotate(
        text,
        (x, y),
        xytext=(-6 if leftwards else 6, 6),
        textcoords="offset points",
        ha="right" if leftwards else "left",
        fontsize=8.5,
        color=_PEAK,
    )


def _title(timeline: Timeline) -> str:
    command = " ".join(timeline.command) or timeline.meta.get("name", "") or f"pid {timeline.pid}"
    if len(command) > 80:
        command = command[:77] + "..."
    status = "" if timeline.exit_code is None else f", exit {timeline.exit_code}"
    title = f"{command}  ({timeline.length:.2f} s, every {timeline.interval:g} s{status})"
    peaks = []
    if timeline.peak_rss is not None:
        peaks.append(f"true peak RSS {mib(timeline.peak_rss)}")
    if timeline.peak_total is not None:
        peaks.append(f"with children {mib(timeline.peak_total)}")
    return title + ("\n" + ", ".join(peaks) if peaks else "")


# ---------------------------------------------------------------------- output


def render(timeline: Timeline, path: str, fmt: str | None = None) -> bytes:
    """The file's bytes for ``path`` (format from its name unless ``fmt``)."""
    fmt = fmt or format_of(path)
    if fmt == "html":
        return page(timeline).encode("utf-8")
    buffer = io.BytesIO()
    figure(timeline).savefig(buffer, format=fmt, metadata=_metadata(fmt))
    return buffer.getvalue()


def _metadata(fmt: str) -> dict[str, Any]:
    # reproducible output: no creation date in the file
    return {"Date": None} if fmt == "svg" else {"Software": "memtrim"}


def page(timeline: Timeline) -> str:
    """A self-contained HTML page: the chart as inline SVG, the data as JSON."""
    try:
        buffer = io.StringIO()
        figure(timeline).savefig(buffer, format="svg", metadata={"Date": None})
        svg = buffer.getvalue()
        svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype
    except PlotUnavailableError:  # no matplotlib: the page draws its own chart
        svg = chart(timeline, series_of(timeline), _title(timeline))
    data = {"summary": summary(timeline), "recording": dumps(timeline), "unit_bytes": MIB}
    blob = script_json(data)
    return _PAGE.format(
        title=html.escape(_title(timeline)),
        svg=svg,
        table=_phase_table(timeline),
        data=blob,
    )


def _phase_table(timeline: Timeline) -> str:
    if not timeline.phases:
        return ""
    children = any(p.peak_total is not None for p in timeline.phases)
    rows = []
    for p in timeline.phases:
        cells = [
            html.escape(p.name),
            f"{p.start:.3f}",
            f"{p.end:.3f}",
            "" if p.peak_heap is None else f"{to_mib(p.peak_heap):.3f}",
            "" if p.peak_rss is None else f"{to_mib(p.peak_rss):.1f}",
        ]
        if children:
            cells.append("" if p.peak_total is None else f"{to_mib(p.peak_total):.1f}")
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    names = ["phase", "start (s)", "end (s)", "heap peak (MiB above start, exact)"]
    names.append("RSS peak (MiB)")
    if children:
        names.append("RSS peak with children (MiB)")
    head = "<tr>" + "".join(f"<th>{name}</th>" for name in names) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>memtrim: {title}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}svg{{max-width:100%;height:auto}}
table{{border-collapse:collapse;margin-top:1em}}td,th{{border:1px solid #ccc;padding:3px 8px}}
td{{text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>memtrim: memory over time</h1><p>{title}</p>
{svg}
{table}
<script type="application/json" id="memtrim-data">{data}</script>
</body></html>
"""
