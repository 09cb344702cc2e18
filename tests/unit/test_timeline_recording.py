"""The recording file format: round trip, and clear errors for bad files."""

from __future__ import annotations

import pytest

from memtrim.analysis import recording
from memtrim.analysis.recording import RecordingError, dumps, load, loads
from memtrim.analysis.timeline import Phase, Sample, Timeline

TIMELINE = Timeline(
    samples=(
        Sample(0.0, 50_000_000, 0),
        Sample(0.1, 80_000_000, 30_000_000, ((4243, 10_000_000),)),
        Sample(0.2, 60_000_000, None, ((4243, 12_000_000), (4250, 1_000_000))),
    ),
    phases=(
        Phase("load", 0.0, 0.15, 30_000_000, 29_000_000, 81_000_000, True, 0),
        Phase("save", 0.15, 0.2, None, None, None, False, 1),
    ),
    start=1_700_000_000.25,
    interval=0.1,
    pid=4242,
    command=("app.py", "--fast"),
    include_children=True,
    multiprocess=True,
    peak_rss=81_500_000,
    exit_code=3,
    duration=0.21,
    meta={"name": "app.py"},
)


def test_round_trip_is_exact():
    assert loads(dumps(TIMELINE)) == TIMELINE


def test_file_round_trip(tmp_path):
    path = tmp_path / "run.mtrec"
    path.write_text(dumps(TIMELINE))
    assert load(str(path)) == TIMELINE


def test_layout_is_the_documented_one():
    lines = dumps(TIMELINE).splitlines()
    assert lines[0] == "memtrim-timeline 1"
    assert lines[2] == "[0.0,50000000,0,[]]"
    assert lines[-1].startswith('{"end":{"samples":3,"phases":2,')


def test_truncated_file_says_so():
    text = dumps(TIMELINE)
    cut = text[: text.index('{"end"')]
    with pytest.raises(RecordingError, match=r"truncated .*3 samples"):
        loads(cut, "run.mtrec")
    with pytest.raises(RecordingError, match="truncated"):
        loads(text[:-5], "run.mtrec")


def test_corrupt_line_is_named():
    lines = dumps(TIMELINE).splitlines(keepends=True)
    lines[3] = "[0.1, 80000000, 3\n"
    with pytest.raises(RecordingError, match="corrupt at line 4"):
        loads("".join(lines), "run.mtrec")


def test_a_record_of_the_wrong_shape_is_corrupt():
    lines = dumps(TIMELINE).splitlines(keepends=True)
    lines[2] = '["zero", 1, 2, []]\n'
    with pytest.raises(RecordingError, match="corrupt at line 3"):
        loads("".join(lines))


def test_counts_must_match():
    lines = dumps(TIMELINE).splitlines(keepends=True)
    del lines[3]
    with pytest.raises(RecordingError, match="end record counts 3 samples"):
        loads("".join(lines))


def test_data_after_the_end_is_corrupt():
    with pytest.raises(RecordingError, match="after the end record"):
        loads(dumps(TIMELINE) + "[0.3,1,null,[]]\n")


def test_newer_version_is_refused():
    text = dumps(TIMELINE).replace("memtrim-timeline 1", "memtrim-timeline 2", 1)
    with pytest.raises(RecordingError, match="format 2, newer"):
        loads(text)


@pytest.mark.parametrize("text", ["", "hello\n", "PK\x03\x04", "memtrim-timeline\n"])
def test_not_a_recording(text):
    with pytest.raises(RecordingError):
        loads(text)


def test_binary_and_missing_files(tmp_path):
    binary = tmp_path / "x.mtrec"
    binary.write_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(RecordingError, match="not a memtrim recording"):
        load(str(binary))
    with pytest.raises(RecordingError, match="cannot read"):
        load(str(tmp_path / "missing.mtrec"))


def test_empty_timeline_round_trips():
    empty = Timeline(samples=())
    assert loads(dumps(empty)) == empty


def test_suffix():
    assert recording.SUFFIX == ".mtrec"
