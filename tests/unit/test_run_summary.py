"""The terminal summary of a capture fits the terminal and keeps its figures whole."""

from __future__ import annotations

import io

import pytest

from memtrim.run.capture import Capture, Counts, Frame, Node
from memtrim.run.render.summary import render_summary

LONG_FILE = "/proj/some/deep/dir/long_module_name_for_testing.py"
LONG_FUNC = "build_a_rather_large_lookup_table_of_records.<locals>.<listcomp>"


def _capture() -> Capture:
    frames = [
        Frame(LONG_FILE, "<module>", 7),
        Frame(LONG_FILE, LONG_FUNC, 3),
        Frame("/usr/lib/python3.12/json/encoder.py", "JSONEncoder.iterencode", 258),
    ]
    sizes = [(1, 4_509_875, 59_667), (2, 3_670_016, 20_002), (0, 173_056, 2)]
    nodes = [Node(-1, -1, 0, Counts(0, 0), Counts(0, 0), Counts(0, 0))]
    for frame, size, count in sizes:
        c = Counts(size, count)
        nodes.append(Node(0, frame, 0, c, c, c))
    sources = {LONG_FILE: {3: '    return [{"identifier": i, "payload": "x" * 100} for i in x]'}}
    return Capture(
        meta={"command": ["long_module_name_for_testing.py"], "duration": 0.5, "exact": True},
        frames=frames,
        nodes=nodes,
        stacks=nodes,
        threads=["MainThread"],
        peak_bytes=8_352_947,
        peak_time=0.4,
        end_bytes=8_352_947,
        timeline=[(0.0, 0, 0), (0.5, 8_352_947, 30_000_000)],
        sources=sources,
    )


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_fits_the_width_and_keeps_figures_and_paths_whole(width):
    out = io.StringIO()
    render_summary(_capture(), out, width=width, cwd="/proj/some/deep/dir")
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    joined = text.replace("\n", "").replace(" ", "").replace("│", "")
    for figure in ("4.3MiB", "59,667", "3.5MiB", "20,002", "169.0KiB"):
        assert figure in joined
    assert "long_module_name_for_testing.py:3" in joined  # folded if it must, never cut
    if width >= 80:  # the path on one line and the function beside it
        assert "long_module_name_for_testing.py:3" in text
        assert "build_a_rather" in text


def test_the_source_is_shown_when_there_is_room():
    out = io.StringIO()
    render_summary(_capture(), out, width=160, cwd="/proj/some/deep/dir")
    assert 'return [{"identifier": i' in out.getvalue()


def test_a_capture_written_while_the_program_ran_says_so():
    capture = _capture()
    capture.meta["partial"] = {"reason": "the peak grew", "peak": 48 * 2**20, "time": 3.5}
    out = io.StringIO()
    render_summary(capture, out, width=200)
    text = " ".join(out.getvalue().split())
    assert "did not finish under memtrim" in text
    assert "at 3.50 s, the peak grew; its peak then: 48.0 MiB" in text
