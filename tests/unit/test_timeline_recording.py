"""The recording file format: round trip, and clear errors for bad files."""

from __future__ import annotations

import pytest

from memtrim.timeline import recording
from memtrim.timeline.model import Phase, Sample, Timeline
from memtrim.timeline.recording import RecordingError, dumps, load, loads

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
    empty = Timeline(samples=(), pid=1)
    assert loads(dumps(empty)) == empty


def test_suffix():
    assert recording.SUFFIX == ".mtrec"


def with_line(number, text):
    """The recording of TIMELINE with line ``number`` (1-based) replaced."""
    lines = dumps(TIMELINE).splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    return "".join(lines)


HEADER = (
    '{"start":1,"interval":0.1,"pid":1,"command":["a"],"metric":"rss",'
    '"include_children":false,"multiprocess":false,"meta":{}}'
)
END = 8  # the end record's line in TIMELINE's recording


@pytest.mark.parametrize(
    ("number", "text", "message"),
    [
        (1, "memtrim-timeline 0", "line 1: bad format version '0'"),
        (1, "memtrim-timeline 01", "line 1: bad format version '01'"),
        (1, "memtrim-timeline 1 extra", "line 1: bad format version"),
        (2, HEADER.replace('"start":1', '"start":NaN'), "line 2: NaN is not allowed"),
        (2, HEADER.replace('"start":1', '"start":-1'), "line 2: the header's start must be at"),
        (2, HEADER.replace('["a"]', '"abc"'), "line 2: the header's command must be a list"),
        (2, HEADER.replace('"meta":{}', '"meta":[1,2]'), "line 2: the header's meta must be"),
        (2, HEADER.replace('"rss"', '"vms"'), "line 2: the header's metric must be one of"),
        (2, HEADER.replace('"pid":1', '"pid":"abc"'), "line 2: the header's pid must be a whole"),
        (2, HEADER.replace(',"meta":{}', ""), "line 2: the header has no 'meta'"),
        (2, HEADER[:-1] + ',"x":1}', "line 2: the header has an unknown key 'x'"),
        (2, "[1, 2]", "line 2: the header must be a JSON object"),
        (3, "[0.1,-5,null,[]]", "line 3: a sample's bytes must be at least 0, got -5"),
        (3, "[0.1,5.5,null,[]]", "line 3: a sample's bytes must be a whole number"),
        (3, "[0.1,5,null,[[1]]]", r"line 3: a sample's child must be \[pid, bytes\]"),
        (3, "[0.1,5,null,[[1,2],[1,3]]]", "line 3: a sample lists the same child twice"),
        (3, "[0.1,5,null]", "line 3: a sample is"),
        (5, "[0.05,5,null,[]]", "line 5: sample at 0.05 s comes after one at 0.1 s"),
        (6, '{"phase":"x","start":0,"end":1,"depth":"a"}', "line 6: a phase's depth must be"),
        (6, '{"phase":"x","start":2,"end":1}', "line 6: phase 'x' ends"),
        (6, '{"phase":"","start":0,"end":1}', "line 6: a phase's name must be"),
        (6, '{"phase":"x","start":0,"end":1,"colour":1}', "line 6: the phase has an unknown"),
        (6, '{"x":1}', "line 6: not a sample"),
        (END, '{"end":{"samples":3,"phases":2,"exit_code":true}}', "line 8: exit_code must be a"),
        (END, '{"end":{"samples":3,"phases":2,"peak_rss":"big"}}', "line 8: peak_rss must be"),
        (END, '{"end":{"samples":3,"phases":2,"exit_code":1099511627776}}', "line 8: exit_code"),
        (END, '{"end":{"samples":3}}', "line 8: the end record has no 'phases'"),
        (END, '{"end":{"samples":3,"phases":2},"x":1}', "line 8: the end record has an unknown"),
        (END, '{"end":{"samples":3,"phases":2,"peak_rss_window":[2,1]}}', "line 8: .*after <="),
        (END, '{"end":[]}', "line 8: the end record is .* an object"),
    ],
)
def test_every_field_is_checked_and_named_with_its_line(number, text, message):
    with pytest.raises(RecordingError, match=f"^run.mtrec is corrupt at {message}"):
        loads(with_line(number, text), "run.mtrec")


def test_the_counts_error_names_the_end_record_line():
    lines = dumps(TIMELINE).splitlines(keepends=True)
    del lines[3]
    with pytest.raises(RecordingError, match="corrupt at line 7: the end record counts 3"):
        loads("".join(lines), "run.mtrec")


def test_windows_line_endings_are_named():
    with pytest.raises(RecordingError, match=r"line 1: it has Windows line endings"):
        loads(dumps(TIMELINE).replace("\n", "\r\n"), "run.mtrec")


def test_the_true_peaks_round_trip():
    from dataclasses import replace

    peaks = replace(
        TIMELINE,
        peak_rss_window=(0.1, 0.2),
        peak_total=99_000_000,
        peak_total_window=(0.1, 0.1),
        phases=(replace(TIMELINE.phases[0], peak_total=90_000_000), TIMELINE.phases[1]),
    )
    assert loads(dumps(peaks)) == peaks
    assert '"peak_total":90000000' in dumps(peaks)
