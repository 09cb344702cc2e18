"""Every result lists its findings in one shape: exact known data, no engine."""

from __future__ import annotations

from memtrim.lines.model import FunctionTable, LineRow, LineTable, build_table
from memtrim.model import Amount, Finding, Site
from memtrim.objects.census import Census, growth_findings
from memtrim.run.capture import NOGIL_THREAD, Capture, Counts, Frame, Node
from memtrim.timeline.model import Phase, Sample, Timeline

MAIN = Frame("/app/app.py", "main", 10, 1)
DECODE = Frame("/usr/lib/python3.12/json/decoder.py", "JSONDecoder.decode", 5, 3)


def node(parent, frame, thread, peak, at_exit, allocated):
    return Node(parent, frame, thread, Counts(*peak), Counts(*at_exit), Counts(*allocated))


def small_capture() -> Capture:
    nodes = [
        node(-1, -1, 0, (0, 0), (0, 0), (0, 0)),
        node(0, 0, 0, (1000, 2), (100, 1), (5000, 10)),
        node(1, 1, 0, (300, 3), (0, 0), (700, 7)),
        node(-1, -1, 1, (50, 1), (50, 1), (60, 2)),
    ]
    return Capture(
        meta={"exact": True},
        peak_bytes=2000,
        peak_time=0.5,
        end_bytes=400,
        frames=[MAIN, DECODE],
        threads=["MainThread", NOGIL_THREAD],
        nodes=nodes,
        stacks=nodes,
        timeline=[(0.0, 0, 1 << 20)],
        sources={"/app/app.py": {10: "x = [0] * 100"}},
        root="/app",
        sys_path=["/app", "/usr/lib/python3.12"],
        seed=1234,
    )


def test_capture_findings():
    main = Site("app.py", "/app/app.py", "main", 10, 9, "x = [0] * 100")
    decode = Site(
        "json/decoder.py", DECODE.filename, "JSONDecoder.decode", 5, 2, ""
    )  # under a sys.path entry
    nogil = f"allocated without the GIL; thread {NOGIL_THREAD}"
    assert small_capture().findings() == [
        Finding("heap", None, "peak", Amount(2000, 6)),
        Finding("line", main, "peak", Amount(1000, 2)),
        Finding("line", decode, "peak", Amount(300, 3)),
        Finding("unattributed", None, "peak", Amount(50, 1), name=nogil),
        Finding("heap", None, "at_exit", Amount(400, 2)),
        Finding("line", main, "at_exit", Amount(100, 1)),
        Finding("unattributed", None, "at_exit", Amount(50, 1), name=nogil),
        Finding("heap", None, "allocated", Amount(5760, 19)),
        Finding("line", main, "allocated", Amount(5000, 10)),
        Finding("line", decode, "allocated", Amount(700, 7)),
        Finding("unattributed", None, "allocated", Amount(60, 2), name=nogil),
    ]


def test_a_capture_without_a_root_keeps_absolute_paths():
    capture = small_capture()
    capture.root, capture.sys_path = "", []
    capture.frames[0] = Frame("/app/app.py", "main", 10)  # version 1: no first line
    site = capture.findings()[1].where
    assert site == Site("/app/app.py", "/app/app.py", "main", 10, None, "x = [0] * 100")


SOURCE = ["@profile\n", "def f():\n", "    a = [0] * 1000\n", "    del a\n"]
STATS = [(3, 1, 8056, 8056, 8056), (4, 2, -8056, 0, 0)]


def test_line_table_findings():
    table = build_table("f", "/proj/demo.py", STATS, SOURCE, 1)
    assert table.first_line == 1
    a = Site("demo.py", "/proj/demo.py", "f", 3, 2, "    a = [0] * 1000")
    d = Site("demo.py", "/proj/demo.py", "f", 4, 3, "    del a")
    expected = [
        Finding("line", a, "increment", Amount(8056)),
        Finding("line", a, "peak", Amount(8056)),
        Finding("line", d, "increment", Amount(-8056)),
        Finding("line", d, "peak", Amount(0)),
    ]
    assert table.findings("/proj") == expected
    assert LineTable((table,), "/proj").findings() == expected
    assert LineTable.of([table], "/proj") == LineTable((table,), "/proj")


def test_a_table_that_did_not_run_has_no_findings():
    table = FunctionTable("g", "x.py", (LineRow(1, "def g():"),), 1)
    assert table.findings() == []


TIMELINE = Timeline(
    samples=(
        Sample(0.0, 50_000_000, 0),
        Sample(0.1, 80_000_000, 30_000_000, ((4243, 10_000_000),)),
        Sample(0.2, 60_000_000, None, ((4243, 12_000_000),)),
    ),
    phases=(
        Phase("load", 0.0, 0.15, 30_000_000, 29_000_000, 81_000_000, True, 0, 91_000_000),
        Phase("save", 0.15, 0.2, None, None, 60_000_000, False, 1),
    ),
    pid=4242,
    include_children=True,
    peak_rss=81_500_000,
)


def test_timeline_findings():
    assert TIMELINE.findings() == [
        Finding("rss", None, "peak", Amount(81_500_000), exact=True),
        Finding("total", None, "peak", Amount(90_000_000), exact=False),  # highest sample
        Finding("heap", None, "peak", Amount(30_000_000), exact=False),
        Finding("heap", None, "peak", Amount(30_000_000), True, "load"),
        Finding("heap", None, "increment", Amount(29_000_000), True, "load"),
        Finding("rss", None, "peak", Amount(81_000_000), True, "load"),
        Finding("total", None, "peak", Amount(91_000_000), False, "load"),
        Finding("rss", None, "peak", Amount(60_000_000), False, "save"),
    ]


def test_a_timeline_without_the_kernels_mark_gives_its_highest_sample():
    timeline = Timeline(samples=(Sample(0.0, 10), Sample(0.1, 30), Sample(0.2, 20)), pid=1)
    assert timeline.findings() == [Finding("rss", None, "peak", Amount(30), exact=False)]
    assert Timeline(samples=(), pid=1).findings() == []


def test_census_findings():
    census = Census({dict: (10, 2000, 640), str: (100, 5000, 100), "app.User": (3, 168, 56)})
    assert census.findings() == [
        Finding("type", None, "live", Amount(5000, 100), name="str"),
        Finding("type", None, "live", Amount(2000, 10), name="dict"),
        Finding("type", None, "live", Amount(168, 3), name="app.User"),
        Finding("total", None, "live", Amount(7168, 113)),
    ]


def test_census_growth_findings():
    before = Census({dict: (10, 2000, 640), str: (100, 5000, 100)})
    after = Census({dict: (12, 2500, 640), str: (100, 5000, 100), list: (1, 56, 56)})
    assert growth_findings(after - before) == [
        Finding("type", None, "increment", Amount(500, 2), name="dict"),
        Finding("type", None, "increment", Amount(56, 1), name="list"),
    ]
