"""One file scheme for every saved result: round trips, migration, clear errors."""

from __future__ import annotations

import json
import re
import struct
import zlib

import pytest

from memtrim.lines.model import LineTable, build_table
from memtrim.model import FormatError, dump, dumps, load, loads
from memtrim.model.files import HEADER, KINDS
from memtrim.objects.census import Census
from memtrim.run import capture as capture_file
from memtrim.run.capture import Capture, CaptureError, Frame
from memtrim.timeline import recording
from memtrim.timeline.recording import RecordingError
from tests.unit.test_model_results import STATS, TIMELINE, small_capture

LINES = LineTable(
    (build_table("f", "/proj/demo.py", STATS, ["@profile\n", "def f():\n", "  a\n", "  b\n"], 1),),
    "/proj",
)
CENSUS = Census({"dict": (10, 2000, 640), "str": (100, 5000, 100)})


def results():
    return {"capture": small_capture(), "timeline": TIMELINE, "lines": LINES, "census": CENSUS}


@pytest.mark.parametrize("kind", ["capture", "timeline", "lines", "census"])
def test_every_result_round_trips_through_one_scheme(tmp_path, kind):
    result = results()[kind]
    data = dumps(result)
    magic, version, flags, length = HEADER.unpack_from(data)
    assert magic == KINDS[kind].magic and magic.startswith(b"MEMTRIM-") and len(magic) == 16
    assert version == KINDS[kind].version and flags == 0
    assert length == len(data) - HEADER.size
    path = tmp_path / f"result.{kind}"
    dump(result, path)
    assert path.read_bytes() == data
    loaded = load(path)
    assert type(loaded) is type(result)
    if kind == "census":
        assert loaded.rows() == result.rows()
    else:
        assert loaded == result
    assert loads(data) == loaded or kind == "census"


def test_results_save_themselves(tmp_path):
    small_capture().save(str(tmp_path / "c"))
    LINES.save(str(tmp_path / "l"))
    CENSUS.save(str(tmp_path / "n"))
    recording.save(TIMELINE, str(tmp_path / "t"))
    assert load(tmp_path / "c") == small_capture()
    assert load(tmp_path / "l") == LINES
    assert load(tmp_path / "n").as_dict() == CENSUS.as_dict()
    assert load(tmp_path / "t") == TIMELINE
    assert recording.load(str(tmp_path / "t")) == TIMELINE  # plot and record read both formats
    assert capture_file.read(str(tmp_path / "c")) == small_capture()


def test_a_loaded_census_matches_types_by_name():
    live = Census({dict: (12, 2500, 640), str: (100, 5000, 100)})
    loaded = loads(dumps(CENSUS))
    assert loaded.get(dict) == live.get(dict).__class__("dict", 10, 2000, 640)
    assert [(r.type, r.bytes_delta) for r in live - loaded] == [("dict", 500)]


def test_the_text_recording_still_loads(tmp_path):
    path = tmp_path / "old.mtrec"
    path.write_text(recording.dumps(TIMELINE))  # format 1: the text alone
    assert load(path) == TIMELINE
    assert recording.load(str(path)) == TIMELINE


def v1_capture_bytes() -> bytes:
    """A version 1 capture, made by hand: 3-field frames, no root, sys.path or seed."""
    body = {
        "meta": {"exact": True, "command": ["app.py"]},
        "peak_bytes": 2000,
        "peak_time": 0.5,
        "end_bytes": 400,
        "frames": [["/app/app.py", "main", 10]],
        "threads": ["MainThread"],
        "nodes": [[-1, -1, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1000, 2, 100, 1, 5000, 10]],
        "stacks": None,
        "timeline": [[0.0, 0, 1048576]],
        "sources": {"/app/app.py": {"10": "x = [0] * 100"}},
    }
    compressed = zlib.compress(json.dumps(body).encode())
    header = struct.pack(">16sIIQ", b"MEMTRIM-CAPTURE\n", 1, 0, len(compressed))
    return header + compressed


def test_version_1_captures_are_migrated(tmp_path):
    path = tmp_path / "old.memtrim"
    path.write_bytes(v1_capture_bytes())
    for capture in (load(path), capture_file.read(str(path))):
        assert isinstance(capture, Capture)
        assert capture.frames == [Frame("/app/app.py", "main", 10, 0)]
        assert (capture.root, capture.sys_path, capture.seed) == ("", [], None)
        node = capture.nodes[1]
        assert (node.peak.bytes, node.at_exit.bytes, node.allocated.bytes) == (1000, 100, 5000)
        assert capture_file.view_total(capture, "at_exit") == 100
    assert capture_file.FORMAT_VERSION == 3


@pytest.mark.parametrize("kind", ["capture", "timeline", "lines", "census"])
def test_truncated_files_say_so(tmp_path, kind):
    data = dumps(results()[kind])
    for cut in (data[:10], data[: HEADER.size - 1], data[:-3], b""):
        with pytest.raises(FormatError, match=r"^r\.bin is truncated"):
            loads(cut, "r.bin")


@pytest.mark.parametrize(
    "data",
    [b"hello world, not memtrim's", b"\x89PNG\r\n\x1a\n" + bytes(40), b"MEMTRIM-OTHER\n\n\n"],
)
def test_other_files_are_not_memtrims(data, tmp_path):
    with pytest.raises(FormatError, match=r"^x is not a memtrim file$"):
        loads(data, "x")


def test_a_newer_version_asks_for_an_upgrade():
    data = dumps(small_capture())
    newer = data[:16] + struct.pack(">I", 99) + data[20:]
    message = r"has capture format version 99; this memtrim reads up to version 3: upgrade"
    with pytest.raises(FormatError, match=message):
        loads(newer, "c.memtrim")
    with pytest.raises(CaptureError, match=message):
        capture_file.loads(newer, "c.memtrim")


def test_a_corrupt_body_is_named():
    data = dumps(LINES)
    flipped = data[:40] + bytes(b ^ 0xFF for b in data[40:])
    with pytest.raises(FormatError, match=r"^l is corrupt$"):
        loads(flipped, "l")
    bad = HEADER.pack(KINDS["lines"].magic, 1, 0, 0) + b""
    bad = bad[:-8] + struct.pack(">Q", len(zlib.compress(b"[1]"))) + zlib.compress(b"[1]")
    with pytest.raises(FormatError, match=r"^l is corrupt"):
        loads(bad, "l")


def test_every_error_is_one_line_and_a_value_error(tmp_path):
    assert issubclass(FormatError, ValueError)
    assert issubclass(CaptureError, FormatError) and issubclass(RecordingError, FormatError)
    with pytest.raises(FormatError, match=r"^no such memtrim file: "):
        load(tmp_path / "missing")
    with pytest.raises(FormatError, match="is a directory"):
        load(tmp_path)
    with pytest.raises(CaptureError, match="is not a memtrim capture"):
        capture_file.loads(dumps(LINES), "l")  # another kind is not a capture
    with pytest.raises(RecordingError, match="is not a memtrim recording"):
        recording.load_bytes(dumps(LINES), "l")


def test_only_results_are_saved():
    with pytest.raises(TypeError, match="dict objects are not saved"):
        dumps({"a": 1})


def test_a_body_that_would_inflate_to_gigabytes_is_refused_first():
    from memtrim.model import files

    bomb = zlib.compress(b"\0" * (files.MIN_LIMIT + 1), 9)  # a few tens of KiB
    data = files.HEADER.pack(files.KINDS["capture"].magic, 2, 0, len(bomb)) + bomb
    with pytest.raises(files.FormatError, match="inflates past 33554432 bytes"):
        files.loads(data, "bomb.memtrim")


def test_a_cut_compressed_body_is_corrupt():
    from memtrim.model import files

    body = zlib.compress(b'{"a": 1}' * 1000)[:-6]
    data = files.HEADER.pack(files.KINDS["capture"].magic, 2, 0, len(body)) + body
    with pytest.raises(files.FormatError, match="is corrupt"):
        files.loads(data, "cut.memtrim")


def _crafted(mutate):
    data = small_capture().to_dict()
    data = json.loads(json.dumps(data))
    mutate(data)
    return files_pack_capture(data)


def files_pack_capture(data):
    from memtrim.model import files

    return files.pack("capture", json.dumps(data).encode())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["nodes"][-1].__setitem__(1, 999), "frame 999 does not exist"),
        (lambda d: d["nodes"][-1].__setitem__(0, 10**6), "is not an earlier node"),
        (lambda d: d["nodes"][-1].__setitem__(2, -5), "thread -5 does not exist"),
        (lambda d: d["nodes"][-1].__setitem__(3, "12"), "not 12 whole numbers"),
        (lambda d: d["nodes"][-1].__setitem__(5, 10**9), "more native bytes than bytes"),
        (lambda d: d["nodes"][-1].__setitem__(4, -1), "negative bytes or count"),
        (lambda d: d.__setitem__("sources", {"a.py": 5}), "'sources' is not"),
        (lambda d: d["timeline"].append([float("nan"), 0, 0]), "a timeline point"),
        (lambda d: d.__setitem__("meta", []), "'meta' is not an object"),
        (lambda d: d.__setitem__("root", 5), "'root' is not a string"),
        (lambda d: d.__setitem__("seed", -1), "'seed' is not"),
        (lambda d: d["frames"].append(["f.py", 3, 1, 1]), "a frame is not"),
        (lambda d: d.pop("threads"), "no 'threads'"),
    ],
)
def test_crafted_captures_are_refused_in_one_line(mutate, message):
    with pytest.raises(CaptureError, match="^crafted.memtrim is corrupt: .*" + re.escape(message)):
        capture_file.loads(_crafted(mutate), "crafted.memtrim")


def test_an_untouched_capture_passes_the_checks():
    assert capture_file.loads(_crafted(lambda d: None), "x").peak_bytes == (
        small_capture().peak_bytes
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["meta"].__setitem__("duration", float("nan")), "meta 'duration' is not"),
        (lambda d: d["meta"].__setitem__("interval", float("inf")), "meta 'interval' is not"),
        (lambda d: d["meta"].__setitem__("mine", [1, float("nan")]), "holds NaN or Infinity"),
        (lambda d: d["meta"].__setitem__("command", "prog.py"), "meta 'command' is not"),
        (lambda d: d["meta"].__setitem__("exit", {"kind": "exit", "code": "0"}), "meta 'exit'"),
        (lambda d: d["meta"].__setitem__("rss", {"peak": 5}), "meta 'rss' is not"),
        (lambda d: d["meta"].__setitem__("sample_bytes", "256K"), "meta 'sample_bytes'"),
        (lambda d: d["meta"].__setitem__("tree_full_blocks", -1), "meta 'tree_full_blocks'"),
        (lambda d: d["meta"].__setitem__("stack_gaps", {"peak": 5}), "meta 'stack_gaps'"),
        (lambda d: d["meta"].__setitem__("exact", "yes"), "meta 'exact' is not"),
        (lambda d: d.__setitem__("sources", {"a.py": {"²": "x"}}), "'sources' is not"),
        (lambda d: d.__setitem__("timeline", [[0, 0, 0]] * 10_001), "10001 timeline: more"),
    ],
)
def test_crafted_meta_and_counts_are_refused_in_one_line(mutate, message):
    # each of these ended in a traceback in a report, or in invalid JSON (NaN)
    with pytest.raises(CaptureError, match="^crafted.memtrim is corrupt: .*" + re.escape(message)):
        capture_file.loads(_crafted(mutate), "crafted.memtrim")
