"""Two runs compared, as one self-contained HTML page (``memtrim diff --html``).

The page has no script at all: the two timelines overlaid and a differential
flame graph of the peak are inline SVG, the lines that changed most a table.
Every string from the programs (paths, functions, source lines, commands) is
escaped; the page loads nothing and opens offline.

The flame graph is built from the NEW run's stacks at the peak, each frame as
wide as the larger of its bytes in the two runs (so that what shrank is seen
too), red where it grew, blue where it shrank, grey where it did not change.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from memtrim.model.units import human
from memtrim.run.diff import LineKey, Side, ViewDiff

WIDTH = 1100
ROW = 18
CHART = 220
_TOP = 30


@dataclass
class _Frame:
    name: str
    base: int = 0
    new: int = 0
    children: dict[LineKey, _Frame] = field(default_factory=dict)


def _tree(base: Side, new: Side, view: str) -> _Frame:
    root = _Frame("all")
    for side, attr in ((new, "new"), (base, "base")):  # names from NEW first
        for key, (size, path) in side.stacks[view].items():
            node = root
            setattr(node, attr, getattr(node, attr) + size)
            for part, site in zip(key, path, strict=False):
                child = node.children.get(part)
                if child is None:
                    child = node.children[part] = _Frame(
                        f"{site.qualname} ({site.path}:{site.line})"
                    )
                setattr(child, attr, getattr(child, attr) + size)
                node = child
    return root


def _colour(frame: _Frame) -> str:
    change = frame.new - frame.base
    whole = max(frame.new, frame.base, 1)
    strength = min(abs(change) / whole, 1.0)
    if change > 0:
        return f"rgb(255,{int(220 - 150 * strength)},{int(210 - 150 * strength)})"
    if change < 0:
        return f"rgb({int(210 - 150 * strength)},{int(225 - 120 * strength)},255)"
    return "rgb(225,225,225)"


def _flame(root: _Frame) -> str:
    total = max(root.new, root.base, 1)
    rects: list[str] = []
    depth_max = 0

    def draw(frame: _Frame, x: float, depth: int) -> None:
        nonlocal depth_max
        width = WIDTH * max(frame.new, frame.base) / total
        if width < 0.5:
            return
        depth_max = max(depth_max, depth)
        change = frame.new - frame.base
        tip = (
            f"{frame.name}: {human(frame.base)} -> {human(frame.new)} "
            f"({'+' if change >= 0 else '-'}{human(abs(change))})"
        )
        label = frame.name if width > 60 else ""
        rects.append(
            f'<g><title>{html.escape(tip)}</title><rect x="{x:.1f}" y="{depth * ROW}" '
            f'width="{width:.1f}" height="{ROW - 1}" fill="{_colour(frame)}"/>'
            + (
                f'<text x="{x + 3:.1f}" y="{depth * ROW + 13}" class="fl">'
                f"{html.escape(label[: int(width / 7)])}</text>"
                if label
                else ""
            )
            + "</g>"
        )
        child_x = x
        for child in sorted(frame.children.values(), key=lambda c: -max(c.new, c.base)):
            draw(child, child_x, depth + 1)
            child_x += WIDTH * max(child.new, child.base) / total

    draw(root, 0.0, 0)
    height = (depth_max + 1) * ROW
    return (
        f'<svg viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="differential flame graph">{"".join(rects)}</svg>'
    )


def _timelines(base: Side, new: Side) -> str:
    points = base.timeline + new.timeline
    if not points:
        return "<p>No timeline in these captures.</p>"
    t_max = max(t for t, _ in points) or 1.0
    h_max = max(h for _, h in points) or 1

    def path(side: Side) -> str:
        coords = [
            f"{WIDTH * t / t_max:.1f},{CHART - CHART * h / h_max:.1f}" for t, h in side.timeline
        ]
        return "M" + " L".join(coords) if coords else ""

    return (
        f'<svg viewBox="0 -5 {WIDTH} {CHART + 25}" width="100%" role="img" '
        f'aria-label="the two timelines">'
        f'<path d="{path(base)}" class="base"/><path d="{path(new)}" class="new"/>'
        f'<text x="0" y="{CHART + 18}" class="ax">0 s</text>'
        f'<text x="{WIDTH - 80}" y="{CHART + 18}" class="ax">{t_max:.2f} s</text>'
        f'<text x="4" y="12" class="ax">{html.escape(human(h_max))}</text></svg>'
        '<p class="legend"><span class="sw base"></span> base <span class="sw new"></span> new '
        "(heap over time, seconds since each run started)</p>"
    )


def _table(part: ViewDiff) -> str:
    rows = []
    for change in part.lines[:_TOP]:
        site = change.where[-1]
        sign = "+" if change.change >= 0 else "-"
        rows.append(
            f'<tr class="{"up" if change.change > 0 else "down"}">'
            f"<td>{sign}{html.escape(human(abs(change.change)))}</td>"
            f"<td>{html.escape(human(change.base))}</td><td>{html.escape(human(change.new))}</td>"
            f"<td>{html.escape(f'{site.path}:{site.line} ({site.qualname})')}</td>"
            f"<td><code>{html.escape(site.source)}</code></td></tr>"
        )
    if not rows:
        return "<p>No line changed.</p>"
    return (
        "<table><thead><tr><th>change</th><th>base</th><th>new</th><th>line</th><th>source</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


_CSS = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; } td, th { padding: 2px 8px; text-align: left; }
tr.up td:first-child { color: #b00; } tr.down td:first-child { color: #14c; }
td:nth-child(-n+3), th:nth-child(-n+3) { text-align: right; white-space: nowrap; }
code { white-space: pre-wrap; word-break: break-all; }
path.base { fill: none; stroke: #4a78c2; stroke-width: 2; }
path.new { fill: none; stroke: #c0392b; stroke-width: 2; }
.sw { display: inline-block; width: 14px; height: 4px; vertical-align: middle; }
.sw.base { background: #4a78c2; } .sw.new { background: #c0392b; }
.ax, .fl { font: 11px system-ui, sans-serif; fill: #333; }
.totals td { padding-right: 2em; }
"""


def render_diff_html(diff: list[ViewDiff], base: Side, new: Side) -> str:
    """The whole page."""
    esc = html.escape
    totals = "".join(
        f"<tr><td>{esc(part.view)}</td><td>{esc(human(part.base))}</td>"
        f"<td>{esc(human(part.new))}</td>"
        f"<td>{'+' if part.change >= 0 else '-'}{esc(human(abs(part.change)))}</td></tr>"
        for part in diff
    )
    views = "".join(
        f"<h2>{esc(part.view)}: the lines that changed most</h2>{_table(part)}" for part in diff
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>memtrim diff</title><style>{_CSS}</style></head><body>"
        f"<h1>memtrim diff</h1><p>base: {esc(base.label)} ({esc(base.command)})<br>"
        f"new: {esc(new.label)} ({esc(new.command)})</p>"
        f'<table class="totals"><tr><th>view</th><th>base</th><th>new</th><th>change</th></tr>'
        f"{totals}</table><h2>Memory over time</h2>{_timelines(base, new)}"
        "<h2>Live at the peak: differential flame graph</h2>"
        "<p>Each frame as wide as the larger of its bytes in the two runs: red grew, blue "
        "shrank, grey did not change (hover for the figures).</p>"
        f"{_flame(_tree(base, new, 'peak'))}{views}</body></html>"
    )
