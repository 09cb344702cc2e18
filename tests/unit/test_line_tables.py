"""Line tables from plain data: merging, text layout and JSON shape."""

from __future__ import annotations

import json

from memtrim.lines.model import FunctionTable, LineRow, build_table
from memtrim.lines.render.json import dumps_tables, tables_to_dict
from memtrim.lines.render.text import HEADER, format_mib, format_table

MIB = 1024 * 1024
SOURCE = [
    "@profile\n",
    "def memory_intensive():\n",
    "    small_list = [None] * 1000000\n",
    "    big_list = [None] * 10000000\n",
    "    del big_list\n",
    "    return small_list\n",
]
STATS = [
    (15, 1, 8_000_056, 88_000_112, 8_000_056),
    (17, 1, 8_000_056, 8_000_056, 8_000_056),
    (18, 1, 80_000_056, 80_000_056, 88_000_112),
    (19, 1, -80_000_056, 0, 8_000_056),
    (20, 1, 0, 0, 8_000_056),
]


def make_table() -> FunctionTable:
    return build_table("memory_intensive", "demo.py", STATS, SOURCE, 15, baseline=40 * MIB)


def test_the_engine_figures_are_shown_as_they_come():
    table = build_table("f", "x.py", [(3, 1, 10, 20, 123_456_789)], ["x\n"], 3)
    assert table.lines[0].mem_usage == 123_456_789


def test_every_source_line_is_listed_and_unrun_lines_are_blank():
    table = make_table()
    assert [row.lineno for row in table.lines] == [15, 16, 17, 18, 19, 20]
    assert not table.lines[1].ran
    assert table.lines[1].source == "def memory_intensive():"
    assert table.lines[1].increment is None


def test_mem_usage_adds_the_baseline():
    table = make_table()
    row = table.lines[3]
    assert row.mem_usage == 40 * MIB + 88_000_112
    assert row.increment == 80_000_056
    assert row.peak_increment == 80_000_056


def test_lines_outside_the_source_still_appear():
    table = build_table("f", "x.py", [(99, 2, 10, 20, 30)], [], 1, 0)
    assert table.lines == (LineRow(99, "", 2, 30, 10, 20),)


def test_text_layout_matches_memory_profiler_with_a_peak_column():
    text = format_table(make_table(), precision=3)
    lines = text.splitlines()
    assert lines[0] == "Filename: demo.py"
    assert lines[2] == HEADER
    assert HEADER.split() == [
        "Line",
        "#",
        "Mem",
        "usage",
        "Increment",
        "Peak",
        "Occurrences",
        "Line",
        "Contents",
    ]
    assert lines[3] == "=" * len(HEADER)
    assert lines[7] == (
        "    18  123.923 MiB   76.294 MiB   76.294 MiB           1"
        "       big_list = [None] * 10000000"
    )
    assert lines[6].startswith("    17   47.629 MiB    7.629 MiB    7.629 MiB           1")
    assert lines[5] == "    16" + " " * 54 + "def memory_intensive():"
    # Increment then Peak: rows where they differ
    assert lines[4] == "    15   47.629 MiB    7.629 MiB   83.923 MiB           1   @profile"
    assert lines[8] == (
        "    19   47.629 MiB  -76.294 MiB    0.000 MiB           1       del big_list"
    )


def test_never_prints_negative_zero():
    assert format_mib(-100, 3) == "0.000 MiB".rjust(11)
    assert format_mib(-80_000_056, 3) == "-76.294 MiB"
    assert format_mib(1024 * 1024, 1) == "  1.0 MiB"


def test_json_shape_uses_integers_and_only_lines_that_ran():
    data = json.loads(dumps_tables([make_table()]))
    assert data == tables_to_dict([make_table()])
    (function,) = data["functions"]
    assert function["function"] == "memory_intensive"
    assert function["filename"] == "demo.py"
    assert [line["lineno"] for line in function["lines"]] == [15, 17, 18, 19, 20]
    line = function["lines"][2]
    assert line == {
        "lineno": 18,
        "source": "    big_list = [None] * 10000000",
        "occurrences": 1,
        "mem_usage": 40 * MIB + 88_000_112,
        "increment": 80_000_056,
        "peak_increment": 80_000_056,
    }


def test_tables_that_never_ran_are_left_out():
    silent = build_table("g", "x.py", [], ["def g():\n", "    pass\n"], 1, 0)
    assert dumps_tables([silent]).count('"function"') == 0
