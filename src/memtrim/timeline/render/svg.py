"""The timeline as a plain SVG chart, drawn without matplotlib.

``memtrim plot -o out.html`` needs no plotting library: when matplotlib is not
installed the page's chart is this one (the lines, the phases, the true peak,
labelled axes). PNG and SVG files still come from matplotlib.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Protocol

from memtrim.timeline.model import Timeline, to_mib


class Series(Protocol):
    """A line to draw (``plot.Series``): label, times (s), values (MiB), style."""

    label: str
    times: tuple[float, ...]
    values: tuple[float, ...]
    style: str


WIDTH, HEIGHT = 1000, 520
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 90  # margins: axis labels, title, legend
_COLOURS = {"main": "#1f3b73", "total": "#8c1c13", "child": "#7a7a7a", "heap": "#2a9d8f"}
_PEAK = "#d62728"
_PHASES = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top``."""
    if top <= 0:
        return [0.0]
    raw = top / count
    step = 10 ** math.floor(math.log10(raw))
    for nice in (1, 2, 2.5, 5, 10):
        if step * nice >= raw:
            step *= nice
            break
    return [i * step for i in range(int(top / step) + 1) if i * step <= top * 1.0001]


def _fmt(value: float) -> str:
    return f"{value:g}" if value >= 1 or value == 0 else f"{value:.2g}"


def chart(timeline: Timeline, lines: Sequence[Series], title: str) -> str:
    """The chart as an ``<svg>`` element (every text escaped)."""
    length = max(timeline.length, 1e-3)
    values = [v for line in lines for v in line.values]
    peak = to_mib(timeline.peak_rss) if timeline.peak_rss is not None else None
    top = max([*values, peak or 0.0, 1e-3]) * 1.08
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + plot_w * min(max(t / length, 0.0), 1.0)

    def y(v: float) -> float:
        return TOP + plot_h * (1.0 - min(max(v / top, 0.0), 1.0))

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<text x="{WIDTH / 2}" y="22" text-anchor="middle" font-size="13">'
        f"{html.escape(title.splitlines()[0] if title else '')}</text>",
    ]
    for i, phase in enumerate(timeline.phases):
        colour = _PHASES[i % len(_PHASES)]
        x0, x1 = x(phase.start), x(phase.end)
        out.append(
            f'<rect x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1):.1f}" height="{plot_h}" '
            f'fill="{colour}" fill-opacity="0.13"><title>{html.escape(phase.name)}</title></rect>'
        )
        out.append(
            f'<text x="{x0 + 3:.1f}" y="{TOP + 14 + 14 * (i % 3)}" fill="{colour}">'
            f"{html.escape(phase.name)}</text>"
        )
    for tick in _ticks(top):
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    for tick in _ticks(length):
        out.append(
            f'<text x="{x(tick):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle">'
            f"{_fmt(tick)}</text>"
        )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#333"/>'
        f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h + 34}" text-anchor="middle">'
        "time (s)</text>"
        f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
        "memory (MiB)</text>"
    )
    for line in lines:
        points = " ".join(
            f"{x(t):.1f},{y(v):.1f}" for t, v in zip(line.times, line.values, strict=True)
        )
        dash = ' stroke-dasharray="6 4"' if line.style == "heap" else ""
        out.append(
            f'<polyline fill="none" stroke="{_COLOURS[line.style]}" stroke-width="1.6"{dash} '
            f'points="{points}"><title>{html.escape(line.label)}</title></polyline>'
        )
        if len(line.times) <= 60:  # few samples: each one marked (one alone is a dot)
            out.extend(
                f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{_COLOURS[line.style]}"/>'
                for t, v in zip(line.times, line.values, strict=True)
            )
    if peak is not None:
        window = timeline.peak_rss_window
        at = (window[0] + window[1]) / 2 if window else None
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(peak):.1f}" y2="{y(peak):.1f}" '
            f'stroke="{_PEAK}" stroke-dasharray="2 3"/>'
            + (f'<circle cx="{x(at):.1f}" cy="{y(peak):.1f}" r="4" fill="{_PEAK}"/>' if at else "")
            + f'<text x="{LEFT + plot_w - 4}" y="{y(peak) - 5:.1f}" text-anchor="end" '
            f'fill="{_PEAK}">peak {_fmt(round(peak, 1))} MiB</text>'
        )
    legend_y = HEIGHT - 22
    for i, line in enumerate(lines[:4]):
        lx = LEFT + i * 240
        out.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{_COLOURS[line.style]}" stroke-width="2"/>'
            f'<text x="{lx + 30}" y="{legend_y + 4}">{html.escape(line.label[:34])}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
