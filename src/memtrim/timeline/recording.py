"""The recording: a versioned, line-oriented text format (spec in docs/timeline.md).

Saved, a recording is a file of memtrim's file scheme (:mod:`memtrim.model.files`,
kind ``timeline``, version 2) whose body is this text; version 1 files, the
text alone, are still read (:func:`load` and :func:`memtrim.model.load` take
both).

::

    memtrim-timeline 1
    {"start": 1732390000.5, "interval": 0.1, "pid": 4242, "command": ["app.py"], ...}
    [0.0, 52428800, 1024, []]
    [0.1, 73400320, 20972544, [[4243, 10485760]]]
    {"phase": "load", "start": 0.05, "end": 0.2, "peak_heap": 20971520, ...}
    {"end": {"samples": 2, "phases": 1, "peak_rss": 74448896, "exit_code": 0, ...}}

Line 1 is the magic word and the format version. Line 2 is the header (a JSON
object). Then one JSON array per sample ``[time, rss, heap|null, [[pid,
bytes], ...]]`` (in time order) and one JSON object per phase, interleaved in
any way. The last line is the end record with the counts, which is how a
truncated file is told from a complete one. Memory is in bytes, times in
seconds since ``start`` (epoch seconds). Readers refuse files with a newer
version, and check every field: a bad one is reported with its line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from memtrim.model import files
from memtrim.timeline.model import Phase, Sample, Timeline

MAGIC = "memtrim-timeline"
VERSION = 1
SUFFIX = ".mtrec"

METRICS = ("rss", "pss", "uss")
MAX_EXIT_STATUS = 0xFFFFFFFF  # Windows; 255 elsewhere
_HEADER_KEYS = (
    "start",
    "interval",
    "pid",
    "command",
    "metric",
    "include_children",
    "multiprocess",
    "meta",
)
_PHASE_FIELDS = ("peak_heap", "increment", "peak_rss", "peak_rss_exact", "depth", "peak_total")
_PHASE_KEYS = ("phase", "start", "end", *_PHASE_FIELDS)
_END_KEYS = (
    "samples",
    "phases",
    "peak_rss",
    "exit_code",
    "duration",
    "peak_rss_window",
    "peak_total",
    "peak_total_window",
)


class RecordingError(files.FormatError):
    """The file is not a memtrim recording, is truncated or corrupt, or is too new."""


# ------------------------------------------------------------------- writing


def dumps(timeline: Timeline) -> str:
    """The recording of ``timeline`` as text."""
    lines = [f"{MAGIC} {VERSION}", _json(_header(timeline))]
    lines += [_json(_sample_row(s)) for s in timeline.samples]
    lines += [_json(_phase_row(p)) for p in timeline.phases]
    lines.append(_json({"end": _footer(timeline)}))
    return "\n".join(lines) + "\n"


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _header(t: Timeline) -> dict[str, Any]:
    return {
        "start": t.start,
        "interval": t.interval,
        "pid": t.pid,
        "command": list(t.command),
        "metric": t.metric,
        "include_children": t.include_children,
        "multiprocess": t.multiprocess,
        "meta": dict(t.meta),
    }


def _sample_row(s: Sample) -> list[Any]:
    return [round(s.time, 6), s.rss, s.heap, [list(c) for c in s.children]]


def _phase_row(p: Phase) -> dict[str, Any]:
    row: dict[str, Any] = {"phase": p.name, "start": round(p.start, 6), "end": round(p.end, 6)}
    row.update((name, getattr(p, name)) for name in _PHASE_FIELDS)
    return row


def _footer(t: Timeline) -> dict[str, Any]:
    return {
        "samples": len(t.samples),
        "phases": len(t.phases),
        "peak_rss": t.peak_rss,
        "exit_code": t.exit_code,
        "duration": t.duration,
        "peak_rss_window": _window_row(t.peak_rss_window),
        "peak_total": t.peak_total,
        "peak_total_window": _window_row(t.peak_total_window),
    }


def _window_row(window: tuple[float, float] | None) -> list[float] | None:
    return None if window is None else [round(window[0], 6), round(window[1], 6)]


# ------------------------------------------------------------------- reading


class _Bad(Exception):
    """What is wrong with one line (the reader adds the file and line)."""


def save(timeline: Timeline, path: str) -> None:
    """Write ``timeline`` to a file of memtrim's scheme (:func:`dump_file` bytes)."""
    files.dump(timeline, path)


def dump_file(timeline: Timeline) -> bytes:
    """The bytes of a recording file (version 2: the text in memtrim's file scheme)."""
    return files.pack(Timeline.FILE_KIND, encode_body(timeline))


def encode_body(timeline: Timeline) -> bytes:
    """The body of a recording file (before compression): the recording text."""
    return dumps(timeline).encode("utf-8")


def decode_body(body: bytes, version: int, name: str = "<recording>") -> Timeline:
    """A timeline from a file's body: the recording text (version 1 files are
    nothing else)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordingError(f"{name} is not a memtrim recording") from None
    return loads(text, name)


def load(path: str) -> Timeline:
    """Read a recording file, either version; :class:`RecordingError` says
    what is wrong with a bad one."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_bytes(data, path)


def load_bytes(data: bytes, name: str = "<recording>") -> Timeline:
    """A recording from a file's bytes: the scheme's (version 2) or bare text (version 1)."""
    if data.startswith(b"MEMTRIM-"):  # the file scheme's magic, of some kind
        try:
            _, version, body = files.unpack(data, name, expect=Timeline.FILE_KIND)
        except files.FormatError as exc:
            raise RecordingError(str(exc)) from None
        return decode_body(body, version, name)
    return decode_body(data, 1, name)


def loads(text: str, name: str = "<recording>") -> Timeline:
    """Parse recording text; ``name`` appears in error messages."""
    lines = text.split("\n")
    _check_magic(lines[0], name)
    if len(lines) < 3 or lines[-1] != "":
        raise RecordingError(f"{name} is truncated (it does not end with a complete line)")
    reader = _Reader()
    for number, line in enumerate(lines[1:-1], start=2):
        try:
            reader.line(line, number)
        except _Bad as exc:
            raise RecordingError(f"{name} is corrupt at line {number}: {exc}") from None
    if reader.footer is None:
        samples = len(reader.samples)
        raise RecordingError(f"{name} is truncated (no end record after {samples} samples)")
    return reader.timeline()


_VERSION = re.compile(r"[1-9][0-9]*")


def _check_magic(first: str, name: str) -> None:
    word, _, version = first.partition(" ")
    if word != MAGIC:
        raise RecordingError(f"{name} is not a memtrim recording")
    if version.endswith("\r"):
        raise RecordingError(
            f"{name} is corrupt at line 1: it has Windows line endings (\\r\\n); "
            "a recording's lines end with \\n only"
        )
    if not _VERSION.fullmatch(version):
        raise RecordingError(f"{name} is corrupt at line 1: bad format version {version!r}")
    if int(version) > VERSION:
        raise RecordingError(
            f"{name} uses recording format {version}, newer than this memtrim reads "
            f"({VERSION}): upgrade memtrim"
        )


class _Reader:
    """Reads the lines after the first, one by one, checking every field."""

    def __init__(self) -> None:
        self.header: dict[str, Any] | None = None
        self.samples: list[Sample] = []
        self.phases: list[Phase] = []
        self.footer: dict[str, Any] | None = None

    def line(self, line: str, number: int) -> None:
        if line.endswith("\r"):
            raise _Bad("it ends with \\r\\n (Windows line endings); lines end with \\n only")
        if self.footer is not None:
            raise _Bad("data after the end record")
        value = _decode(line)
        if self.header is None:
            self.header = _header_of(value)
        elif isinstance(value, list):
            self._sample(value)
        elif isinstance(value, dict) and "phase" in value:
            self.phases.append(_phase_of(value))
        elif isinstance(value, dict) and "end" in value:
            self.footer = self._end(value)
        else:
            raise _Bad(
                "not a sample (a JSON array), a phase or the end record (JSON objects "
                'with a "phase" or an "end" key)'
            )

    def _sample(self, row: list[Any]) -> None:
        sample = _sample_of(row)
        if self.samples and sample.time < self.samples[-1].time:
            raise _Bad(
                f"sample at {sample.time} s comes after one at {self.samples[-1].time} s: "
                "samples are in time order"
            )
        self.samples.append(sample)

    def _end(self, value: dict[str, Any]) -> dict[str, Any]:
        _only_keys(value, ("end",), (), "the end record")
        footer = value["end"]
        if not isinstance(footer, dict):
            raise _Bad('the end record is {"end": {...}}, an object')
        _only_keys(footer, ("samples", "phases"), _END_KEYS[2:], "the end record")
        counted = (_int(footer["samples"], "samples", 0), _int(footer["phases"], "phases", 0))
        held = (len(self.samples), len(self.phases))
        if counted != held:
            raise _Bad(
                f"the end record counts {counted[0]} samples and {counted[1]} phases, "
                f"the file holds {held[0]} and {held[1]}"
            )
        return {
            "peak_rss": _opt_int(footer.get("peak_rss"), "peak_rss", 0),
            "exit_code": _opt_int(footer.get("exit_code"), "exit_code", 0, MAX_EXIT_STATUS),
            "duration": _opt_number(footer.get("duration"), "duration"),
            "peak_rss_window": _window(footer.get("peak_rss_window"), "peak_rss_window"),
            "peak_total": _opt_int(footer.get("peak_total"), "peak_total", 0),
            "peak_total_window": _window(footer.get("peak_total_window"), "peak_total_window"),
        }

    def timeline(self) -> Timeline:
        assert self.header is not None and self.footer is not None
        return Timeline(
            samples=tuple(self.samples),
            phases=tuple(self.phases),
            **self.header,
            **self.footer,
        )


def _reject_constant(word: str) -> Any:
    raise _Bad(f"{word} is not allowed: numbers must be finite")


def _decode(line: str) -> Any:
    try:
        return json.loads(line, parse_constant=_reject_constant)
    except ValueError:
        raise _Bad("not valid JSON") from None


def _only_keys(
    value: dict[str, Any], required: Sequence[str], optional: Sequence[str], what: str
) -> None:
    for key in required:
        if key not in value:
            raise _Bad(f"{what} has no {key!r}")
    for key in value:
        if key not in required and key not in optional:
            raise _Bad(f"{what} has an unknown key {key!r}")


def _int(value: Any, what: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"{what} must be a whole number, got {json.dumps(value)}")
    if minimum is not None and value < minimum:
        raise _Bad(f"{what} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise _Bad(f"{what} must be at most {maximum}, got {value}")
    return value


def _opt_int(
    value: Any, what: str, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    return None if value is None else _int(value, what, minimum, maximum)


def _number(value: Any, what: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Bad(f"{what} must be a number of seconds, got {json.dumps(value)}")
    if value < minimum:
        raise _Bad(f"{what} must be at least {minimum:g}, got {value}")
    return float(value)


def _opt_number(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"{what} must be true or false, got {json.dumps(value)}")
    return value


def _window(value: Any, what: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise _Bad(f"{what} must be [after, before] in seconds, or null")
    after, before = (_number(v, what, minimum=-math.inf) for v in value)
    if after > before:
        raise _Bad(f"{what} must be [after, before] with after <= before, got {value}")
    return (after, before)


def _header_of(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad("the header must be a JSON object")
    _only_keys(value, _HEADER_KEYS, (), "the header")
    command, metric, meta = value["command"], value["metric"], value["meta"]
    if not isinstance(command, list) or not all(isinstance(arg, str) for arg in command):
        raise _Bad(f"the header's command must be a list of strings, got {json.dumps(command)}")
    if metric not in METRICS:
        raise _Bad(f"the header's metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _Bad(f"the header's meta must be an object of strings, got {json.dumps(meta)}")
    return {
        "start": _number(value["start"], "the header's start"),
        "interval": _number(value["interval"], "the header's interval"),
        "pid": _int(value["pid"], "the header's pid", 1),
        "command": tuple(command),
        "metric": metric,
        "include_children": _bool(value["include_children"], "the header's include_children"),
        "multiprocess": _bool(value["multiprocess"], "the header's multiprocess"),
        "meta": dict(meta),
    }


def _sample_of(row: list[Any]) -> Sample:
    if len(row) != 4:
        raise _Bad(f"a sample is [time, bytes, heap, children], got {len(row)} values")
    time, rss, heap, children = row
    if not isinstance(children, list):
        raise _Bad("a sample's children must be a list of [pid, bytes]")
    pairs = []
    for child in children:
        if not isinstance(child, list) or len(child) != 2:
            raise _Bad(f"a sample's child must be [pid, bytes], got {json.dumps(child)}")
        pairs.append((_int(child[0], "a child's pid", 1), _int(child[1], "a child's bytes", 0)))
    if len({pid for pid, _ in pairs}) != len(pairs):
        raise _Bad("a sample lists the same child twice")
    return Sample(
        _number(time, "a sample's time"),
        _int(rss, "a sample's bytes", 0),
        _opt_int(heap, "a sample's heap"),
        tuple(sorted(pairs)),
    )


def _phase_of(row: dict[str, Any]) -> Phase:
    _only_keys(row, ("phase", "start", "end"), _PHASE_FIELDS, "the phase")
    name = row["phase"]
    if not isinstance(name, str) or not name:
        raise _Bad(f"a phase's name must be a non-empty string, got {json.dumps(name)}")
    start = _number(row["start"], "a phase's start")
    end = _number(row["end"], "a phase's end")
    if end < start:
        raise _Bad(f"phase {name!r} ends ({end} s) before it starts ({start} s)")
    return Phase(
        name,
        start,
        end,
        peak_heap=_opt_int(row.get("peak_heap"), "a phase's peak_heap"),
        increment=_opt_int(row.get("increment"), "a phase's increment"),
        peak_rss=_opt_int(row.get("peak_rss"), "a phase's peak_rss", 0),
        peak_rss_exact=_bool(row.get("peak_rss_exact", False), "a phase's peak_rss_exact"),
        depth=_int(row.get("depth", 0), "a phase's depth", 0),
        peak_total=_opt_int(row.get("peak_total"), "a phase's peak_total", 0),
    )
