"""Draw a :class:`~memtrim.analysis.timeline.Timeline`: PNG, SVG, or an offline HTML page.

matplotlib (the ``plot`` extra) draws; it is imported only when a plot is
made, through its object API (no pyplot, no global backend switch). The HTML
page embeds the chart as inline SVG and the data as JSON: it needs no network.
"""

from __future__ import annotations

import html
import io
import json
import os
from dataclasses import dataclass
from typing import Any

from memtrim.analysis.recording import dumps
from memtrim.analysis.timeline import MIB, Timeline, child_series, peak_of, to_mib

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


def summary(timeline: Timeline) -> dict[str, Any]:
    """The figures the chart states, as plain data (also embedded in the HTML)."""
    key = _peak_series_key(timeline)
    sampled = peak_of(timeline.samples, key)
    return {
        "peak_series": "RSS with children" if key == "total" else "RSS",
        "sampled_peak_mib": None if sampled is None else to_mib(sampled.value),
        "sampled_peak_time": None if sampled is None else sampled.time,
        "kernel_peak_mib": None if timeline.peak_rss is None else to_mib(timeline.peak_rss),
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
            }
            for p in timeline.phases
        ],
    }


# ------------------------------------------------------------------ matplotlib


def _matplotlib() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailableError(
            "plotting needs matplotlib: pip install 'memtrim[plot]'"
        ) from None
    return Figure


def figure(timeline: Timeline) -> Any:
    """A matplotlib ``Figure`` of the timeline."""
    fig = _matplotlib()(figsize=(10, 5.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    _draw_series(ax, series_of(timeline))
    _draw_phases(ax, timeline)
    _draw_peaks(ax, timeline)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("memory (MiB)")
    ax.set_title(_title(timeline), fontsize=11)
    ax.set_xlim(0, max(timeline.length, 1e-3))
    top = ax.get_ylim()[1]
    room = 1.0 + 0.1 * (1 + _phase_rows(timeline)) if timeline.phases else 1.08
    ax.set_ylim(0, top * room)  # headroom for the phase labels
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=3, fontsize=8, frameon=False)
    return fig


def _phase_rows(timeline: Timeline) -> int:
    return 1 + max((p.depth for p in timeline.phases), default=0)


_STYLES = {
    "main": {"color": "#1f3b73", "linewidth": 1.8},
    "total": {"color": "#8c1c13", "linewidth": 1.4},
    "child": {"linewidth": 0.9, "alpha": 0.8},
    "heap": {"color": "#2a9d8f", "linewidth": 1.2, "linestyle": "--"},
}


def _draw_series(ax: Any, lines: list[Series]) -> None:
    for line in lines:
        marker = "." if len(line.times) <= 60 else None
        ax.plot(line.times, line.values, label=line.label, marker=marker, **_STYLES[line.style])


def _draw_phases(ax: Any, timeline: Timeline) -> None:
    for index, phase in enumerate(timeline.phases):
        colour = _PHASE_COLOURS[index % len(_PHASE_COLOURS)]
        ax.axvspan(phase.start, phase.end, color=colour, alpha=0.13, linewidth=0)
        label = phase.name
        if phase.peak_rss is not None:
            label += f"\nRSS peak {to_mib(phase.peak_rss):.1f} MiB"
        if phase.peak_heap is not None:
            label += f"\nheap +{to_mib(phase.peak_heap):.1f} MiB"
        y = 0.985 - 0.1 * phase.depth
        ax.text(
            phase.start,
            y,
            " " + label.replace("\n", "\n "),
            clip_on=True,
            transform=ax.get_xaxis_transform(),
            va="top",
            ha="left",
            fontsize=7.5,
            color=colour,
        )


def _draw_peaks(ax: Any, timeline: Timeline) -> None:
    key = _peak_series_key(timeline)
    sampled = peak_of(timeline.samples, key)
    if sampled is not None:
        mib = to_mib(sampled.value)
        ax.plot([sampled.time], [mib], marker="v", color="#d62728", markersize=9, linestyle="")
        what = "peak with children" if key == "total" else "peak"
        ax.annotate(
            f"{what} {mib:.1f} MiB at {sampled.time:.2f} s",
            (sampled.time, mib),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=8.5,
            color="#d62728",
        )
    kernel = timeline.peak_rss
    rss_peak = peak_of(timeline.samples, "rss")
    if kernel is not None and (rss_peak is None or kernel > rss_peak.value):
        ax.axhline(
            to_mib(kernel),
            color="#d62728",
            linestyle=":",
            linewidth=1,
            label=f"true peak RSS of {timeline.pid}: {to_mib(kernel):.1f} MiB "
            "(kernel's mark, between samples)",
        )


def _title(timeline: Timeline) -> str:
    command = " ".join(timeline.command) or timeline.meta.get("name", "") or f"pid {timeline.pid}"
    if len(command) > 80:
        command = command[:77] + "..."
    status = "" if timeline.exit_code is None else f", exit {timeline.exit_code}"
    return f"{command}  ({timeline.length:.2f} s, every {timeline.interval:g} s{status})"


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
    buffer = io.StringIO()
    figure(timeline).savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]  # drop the XML prolog and doctype
    data = {"summary": summary(timeline), "recording": dumps(timeline), "unit_bytes": MIB}
    blob = json.dumps(data).replace("</", "<\\/")
    return _PAGE.format(
        title=html.escape(_title(timeline)),
        svg=svg,
        table=_phase_table(timeline),
        data=blob,
    )


def _phase_table(timeline: Timeline) -> str:
    if not timeline.phases:
        return ""
    rows = []
    for p in timeline.phases:
        heap = "" if p.peak_heap is None else f"{to_mib(p.peak_heap):.3f}"
        rss = "" if p.peak_rss is None else f"{to_mib(p.peak_rss):.1f}"
        rows.append(
            f"<tr><td>{html.escape(p.name)}</td><td>{p.start:.3f}</td><td>{p.end:.3f}</td>"
            f"<td>{heap}</td><td>{rss}</td></tr>"
        )
    head = (
        "<tr><th>phase</th><th>start (s)</th><th>end (s)</th>"
        "<th>heap peak (MiB above start, exact)</th><th>RSS peak (MiB)</th></tr>"
    )
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
