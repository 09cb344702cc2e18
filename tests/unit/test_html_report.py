"""The HTML report: the data embedded in the page, escaping, size on big captures."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import time
from typing import Any

import pytest

from memtrim.run.capture import (
    VIEWS,
    Capture,
    Counts,
    Frame,
    Node,
    iter_tree,
    sites,
    stack_tree,
    view_total,
)
from memtrim.run.render import html as report

HOSTILE_FILE = "/app/</script><script>alert(1)</script>.py"
HOSTILE_FUNC = "\"'&<>"
HOSTILE_THREAD = "worker</script><img src=x onerror=document.body.setAttribute('data-pwned',1)>"
HOSTILE_SOURCE = "x = '</script><!-- <script>' \u2028 \u2029 ünïcødé 🐍"
HOSTILE_COMMAND = ["app.py", "</title><script>alert(2)</script>", '--name="q\'&"']

_DATA = re.compile(r'<script id="memtrim-data" type="application/json">(.*?)</script>', re.S)
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _node(parent: int, frame: int, thread: int, peak: int, at_exit: int, allocated: int) -> Node:
    """A node whose block counts are its bytes / 1000 (at least 1 when bytes)."""

    def counts(n: int) -> Counts:
        return Counts(n, max(n // 1000, 1) if n else 0)

    return Node(parent, frame, thread, counts(peak), counts(at_exit), counts(allocated))


def small_capture(exact: bool = True) -> Capture:
    """Two threads, four lines (one with hostile names), known bytes in every view.

    Per line: build (app.py:20) has peak 5300 = 5000 + 300 from the worker,
    at exit 1000, allocated 29000; load (lib.py:5) 2000 / 2000 / 2000; the hostile
    line 700 / 0 / 700; main (app.py:10) 100 / 0 / 1000.
    """
    frames = [
        Frame("/app/app.py", "main", 10),
        Frame("/app/app.py", "build", 20),
        Frame("/usr/lib/python3.12/lib.py", "load", 5),
        Frame(HOSTILE_FILE, HOSTILE_FUNC, 7),
    ]
    nodes = [
        _node(-1, -1, 0, 0, 0, 0),
        _node(0, 0, 0, 100, 0, 1000),
        _node(1, 1, 0, 5000, 1000, 20000),
        _node(1, 2, 0, 2000, 2000, 2000),
        _node(2, 3, 0, 700, 0, 700),
        _node(-1, -1, 1, 0, 0, 0),
        _node(5, 1, 1, 300, 0, 9000),
    ]
    stacks = nodes
    if not exact:  # sampled: only the two biggest stacks were sampled, at other weights
        stacks = [
            _node(-1, -1, 0, 0, 0, 0),
            _node(0, 0, 0, 0, 0, 0),
            _node(1, 1, 0, 6000, 0, 24000),
            _node(1, 2, 0, 1000, 3000, 0),
        ]
    return Capture(
        meta={
            "command": HOSTILE_COMMAND,
            "python": "3.12.1",
            "pid": 4242,
            "duration": 2.5,
            "exact": exact,
            "sample_bytes": 0 if exact else 262144,
            "exit": {"kind": "exception", "code": 1, "message": "ValueError: <x-pwn>bad</x-pwn>"},
        },
        peak_bytes=8200,
        peak_time=1.25,
        end_bytes=3100,
        frames=frames,
        threads=["MainThread", HOSTILE_THREAD],
        nodes=nodes,
        stacks=stacks,
        timeline=[(0.0, 0, 1000), (1.25, 8200, 9000), (2.5, 3100, 7000)],
        sources={
            "/app/app.py": {10: "main()", 20: "data = build(n)"},
            HOSTILE_FILE: {7: HOSTILE_SOURCE},
        },
    )


def big_capture(count: int = 100_000, seed: int = 7) -> Capture:
    """``count`` stack nodes, nearly all distinct lines, in a bushy tree ~12 deep."""
    rng = random.Random(seed)
    frames = [
        Frame(f"/srv/app/pkg{i % 37}/module_{i % 613}.py", f"Handler{i % 97}.method_{i}", i % 1200)
        for i in range(count)
    ]
    nodes = [Node(-1, -1, 0)]
    depth = [0]
    for i in range(1, count):
        parent = rng.randrange(0, i)
        while depth[parent] > 11:
            parent = nodes[parent].parent
        size = rng.randrange(0, 20_000)
        depth.append(depth[parent] + 1)
        nodes.append(_node(parent, i, 0, size, size // 4, size * 3))
    sources = {}
    for frame in frames[:30_000]:
        sources.setdefault(frame.filename, {})[frame.lineno] = f"result = work_{frame.lineno}(x)"
    timeline = [(i / 100, rng.randrange(10**9), rng.randrange(10**9)) for i in range(2000)]
    meta = {"command": ["big.py"], "exact": True, "sample_bytes": 0, "duration": 20.0}
    return Capture(meta, 10**9, 3.0, 10**8, frames, ["MainThread"], nodes, nodes, timeline, sources)


def page_data(page: str) -> dict[str, Any]:
    """The JSON embedded in a rendered page."""
    match = _DATA.search(page)
    assert match, "no embedded data"
    return json.loads(match[1])


def decode_tree(data: dict[str, Any], view: str) -> list[tuple[int, str, int, int]]:
    """The embedded tree of ``view`` as (depth, name, total, self) rows, depth first."""
    flat = data["views"][view]["tree"]["nodes"]
    rows: list[tuple[int, str, int, int]] = []
    for offset in range(0, len(flat), 4):
        parent, frame, total, own = flat[offset : offset + 4]
        depth = 1 if parent < 0 else rows[parent][0] + 1
        if frame < 0:
            name = f"thread {data['threads'][-1 - frame]}"
        else:
            name = data["strings"][data["frames"][frame][1]]
        rows.append((depth, name, total, own))
    return rows


def site_rows(data: dict[str, Any], rows: list[list[int]]) -> list[tuple[str, str, int, int, int]]:
    """Embedded ``[frame, bytes, blocks, native]`` rows as (file, function, line, bytes, blocks)."""
    out = []
    for frame, size, blocks, native in rows:
        assert 0 <= native <= size
        file, function, line = data["frames"][frame]
        out.append((data["strings"][file], data["strings"][function], line, size, blocks))
    return out


@pytest.fixture(scope="module")
def page() -> str:
    return report.render_html(small_capture())


# ------------------------------------------------------------------ the data


def test_view_totals_are_the_exact_per_line_sums(page: str) -> None:
    data = page_data(page)
    expected = {"peak": (8100, 10), "at_exit": (3000, 3), "allocated": (32700, 33)}
    for view, (size, blocks) in expected.items():
        assert data["views"][view]["total"] == size == view_total(small_capture(), view)
        assert data["views"][view]["blocks"] == blocks
        assert data["views"][view]["unattributed"] == 0
    assert (data["peak_bytes"], data["peak_time"], data["end_bytes"]) == (8200, 1.25, 3100)


@pytest.mark.parametrize("view", VIEWS)
def test_top_lines_are_those_of_sites_in_order(page: str, view: str) -> None:
    data = page_data(page)
    expected = [
        (s.frame.filename, s.frame.function, s.frame.lineno, s.bytes, s.count)
        for s in sites(small_capture(), view)
    ]
    assert site_rows(data, data["views"][view]["sites"]) == expected
    assert data["views"][view]["lines"] == len(expected)


def test_top_lines_of_the_peak(page: str) -> None:
    rows = site_rows(page_data(page), page_data(page)["views"]["peak"]["sites"])
    assert [(r[1], r[3], r[4]) for r in rows] == [
        ("build", 5300, 6),
        ("load", 2000, 2),
        (HOSTILE_FUNC, 700, 1),
        ("main", 100, 1),
    ]


def test_files_are_sorted_by_bytes_with_their_lines(page: str) -> None:
    data = page_data(page)
    files = data["views"]["peak"]["files"]
    summary = [(data["strings"][f[0]], f[1], f[2], f[3]) for f in files]
    assert summary == [
        ("/app/app.py", 5400, 7, 2),
        ("/usr/lib/python3.12/lib.py", 2000, 2, 1),
        (HOSTILE_FILE, 700, 1, 1),
    ]
    assert data["views"]["peak"]["file_count"] == 3
    lines = site_rows(data, files[0][4])
    assert [(r[1], r[2], r[3]) for r in lines] == [("build", 20, 5300), ("main", 10, 100)]
    at_exit = [(data["strings"][f[0]], f[1]) for f in data["views"]["at_exit"]["files"]]
    assert at_exit == [("/usr/lib/python3.12/lib.py", 2000), ("/app/app.py", 1000)]


@pytest.mark.parametrize("view", VIEWS)
def test_the_tree_is_stack_tree_depth_first(page: str, view: str) -> None:
    expected = [
        (depth, node.name, node.total_bytes, node.self_bytes)
        for depth, node in iter_tree(stack_tree(small_capture(), view))
        if depth > 0  # the page adds the root "all" itself
    ]
    data = page_data(page)
    assert decode_tree(data, view) == expected
    assert data["views"][view]["tree"]["total"] == stack_tree(small_capture(), view).total_bytes


def test_peak_tree_figures(page: str) -> None:
    assert decode_tree(page_data(page), "peak") == [
        (1, "thread MainThread", 7800, 0),
        (2, "main", 7800, 100),
        (3, "build", 5700, 5000),
        (4, HOSTILE_FUNC, 700, 700),
        (3, "load", 2000, 2000),
        (1, f"thread {HOSTILE_THREAD}", 300, 0),
        (2, "build", 300, 300),
    ]


def test_sources_of_the_lines_shown(page: str) -> None:
    data = page_data(page)
    by_name = {data["strings"][int(k)]: v for k, v in data["sources"].items()}
    assert by_name["/app/app.py"] == {"10": "main()", "20": "data = build(n)"}
    assert by_name[HOSTILE_FILE] == {"7": HOSTILE_SOURCE}


def test_sampled_mode_stacks_from_stacks_lines_from_nodes() -> None:
    capture = small_capture(exact=False)
    data = page_data(report.render_html(capture))
    assert data["exact"] is False and data["meta"]["sample_bytes"] == 262144
    assert data["views"]["peak"]["total"] == 8100  # exact, from nodes
    assert decode_tree(data, "peak") == [
        (1, "thread MainThread", 7000, 0),
        (2, "main", 7000, 0),
        (3, "build", 6000, 6000),
        (3, "load", 1000, 1000),
    ]
    assert decode_tree(data, "at_exit") == [
        (1, "thread MainThread", 3000, 0),
        (2, "main", 3000, 0),
        (3, "load", 3000, 3000),
    ]


def test_an_empty_capture_renders() -> None:
    capture = Capture({}, 0, 0.0, 0, [], [], [], [], [])
    data = page_data(report.render_html(capture))
    for view in VIEWS:
        assert data["views"][view]["sites"] == [] and data["views"][view]["tree"]["nodes"] == []
    assert data["timeline"] == []


def test_unattributed_bytes_are_reported_not_listed() -> None:
    capture = small_capture()
    capture.nodes[0].peak = Counts(50, 1)  # a thread root: allocated without the GIL
    data = page_data(report.render_html(capture))
    assert data["views"]["peak"]["unattributed"] == 50
    assert data["views"]["peak"]["total"] == 8100


def test_odd_meta_values_still_give_valid_json() -> None:
    capture = small_capture()
    capture.meta.update(duration=float("nan"), weird=object(), nested={1: float("inf")})
    data = page_data(report.render_html(capture))
    assert data["meta"]["duration"] is None
    assert data["meta"]["nested"] == {"1": None}
    assert isinstance(data["meta"]["weird"], str)


# ------------------------------------------------------------------ escaping


def test_nothing_from_the_program_can_end_the_data_element(page: str) -> None:
    match = _DATA.search(page)
    assert match
    body = match[1]
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in body
    assert "alert(1)" in body  # there, as escaped text
    assert page.count("<script") == 2
    assert page.count("</script>") == 2


def test_hostile_strings_round_trip_exactly(page: str) -> None:
    data = page_data(page)
    assert HOSTILE_FILE in data["strings"] and HOSTILE_FUNC in data["strings"]
    assert data["threads"][1] == HOSTILE_THREAD
    assert data["meta"]["command"] == HOSTILE_COMMAND
    assert data["meta"]["exit"]["message"] == "ValueError: <x-pwn>bad</x-pwn>"


def test_the_title_is_escaped(page: str) -> None:
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    assert title
    assert "<" not in title[1] and "&lt;/title&gt;&lt;script&gt;" in title[1]
    assert page.count("<title>") == 1 and page.count("</title>") == 1


def test_lone_surrogates_do_not_break_the_page() -> None:
    capture = small_capture()
    name = "/app/caf\udce9.py"  # an undecodable file name, as os.fsdecode gives it
    capture.frames[0] = Frame(name, "main", 10)
    capture.meta["command"] = [name]
    page = report.render_html(capture)
    page.encode("utf-8")  # writable as UTF-8
    assert name in page_data(page)["strings"]


def test_script_json_escapes() -> None:
    text = report.script_json({"a": "</script><!--&\u2028\u2029\ud800"})
    assert text == '{"a":"\\u003c/script\\u003e\\u003c!--\\u0026\\u2028\\u2029\\ud800"}'
    assert json.loads(text) == {"a": "</script><!--&\u2028\u2029\ud800"}


# -------------------------------------------------------- a self-contained page


def test_the_page_loads_nothing(page: str) -> None:
    code = _DATA.sub("", page)  # the program's strings may say anything
    for needle in ("<link", " src=", "url(", "@import", "https:", "//cdn", "fetch(", "XMLHttp"):
        assert needle not in code
    assert "default-src 'none'" in page


def test_the_policy_lets_exactly_the_page_script_run(page: str) -> None:
    scripts = _SCRIPT.findall(page)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page


# ------------------------------------------------------------------- big ones


@pytest.fixture(scope="module")
def big() -> tuple[Capture, str, float]:
    capture = big_capture()
    start = time.perf_counter()
    page = report.render_html(capture)
    return capture, page, time.perf_counter() - start


def test_a_big_capture_gives_a_page_of_bounded_size(big: tuple[Capture, str, float]) -> None:
    capture, page, seconds = big
    size = len(page.encode())
    assert size < 5_000_000, f"{size:,} bytes"
    assert seconds < 60  # generous: shared CI machines; typically 1-3 s
    data = page_data(page)
    for view in VIEWS:
        tree = data["views"][view]["tree"]
        assert tree["shown"] <= report.TREE_NODES < tree["nodes_with_bytes"]
        assert tree["total"] == stack_tree(capture, view).total_bytes
        assert len(data["views"][view]["sites"]) == report.SITES_PER_VIEW
        assert len(data["views"][view]["files"]) <= report.FILES_PER_VIEW
    assert len(data["timeline"]) <= report.TIMELINE_POINTS


def test_a_big_tree_keeps_the_heaviest_nodes_connected(big: tuple[Capture, str, float]) -> None:
    capture, page, _ = big
    data = page_data(page)
    flat = data["views"]["peak"]["tree"]["nodes"]
    totals = [flat[i + 2] for i in range(0, len(flat), 4)]
    parents = [flat[i] for i in range(0, len(flat), 4)]
    for row, parent in enumerate(parents):
        assert parent < row  # depth first: a parent comes before its children
        if parent >= 0:
            assert totals[parent] >= totals[row]
    full = sorted((n.total_bytes for _, n in iter_tree(stack_tree(capture, "peak"))), reverse=True)
    assert min(totals) >= full[report.TREE_NODES]  # the largest nodes are the ones kept
