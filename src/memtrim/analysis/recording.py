"""The recording file: a versioned, line-oriented text format (spec in docs/timeline.md).

::

    memtrim-timeline 1
    {"start": 1732390000.5, "interval": 0.1, "pid": 4242, "command": ["app.py"], ...}
    [0.0, 52428800, 1024, []]
    [0.1, 73400320, 20972544, [[4243, 10485760]]]
    {"phase": "load", "start": 0.05, "end": 0.2, "peak_heap": 20971520, ...}
    {"end": {"samples": 2, "phases": 1, "peak_rss": 74448896, "exit_code": 0, ...}}

Line 1 is the magic word and the format version. Line 2 is the header (a JSON
object). Then one JSON array per sample ``[time, rss, heap|null, [[pid,
bytes], ...]]`` and one JSON object per phase, in any order. The last line is
the end record with the counts, which is how a truncated file is told from a
complete one. Memory is in bytes, times in seconds since ``start`` (epoch
seconds). Readers refuse files with a newer version.
"""

from __future__ import annotations

import json
from typing import Any

from memtrim.analysis.timeline import Phase, Sample, Timeline

MAGIC = "memtrim-timeline"
VERSION = 1
SUFFIX = ".mtrec"

_HEADER_KEYS = ("start", "interval", "pid", "command", "metric")
_PHASE_FIELDS = ("peak_heap", "increment", "peak_rss", "peak_rss_exact", "depth")


class RecordingError(ValueError):
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
    }


# ------------------------------------------------------------------- reading


def load(path: str) -> Timeline:
    """Read a recording; :class:`RecordingError` says what is wrong with a bad one."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordingError(f"{path} is not a memtrim recording") from None
    return loads(text, path)


def loads(text: str, name: str = "<recording>") -> Timeline:
    """Parse recording text; ``name`` appears in error messages."""
    lines = text.split("\n")
    _check_magic(lines[0], name)
    if len(lines) < 3 or lines[-1] != "":
        raise RecordingError(f"{name} is truncated (it does not end with a complete line)")
    header = _object(lines[1], 2, name)
    samples: list[Sample] = []
    phases: list[Phase] = []
    footer = None
    for number, line in enumerate(lines[2:-1], start=3):
        if footer is not None:
            raise RecordingError(f"{name} is corrupt at line {number}: data after the end record")
        footer = _parse_line(line, number, name, samples, phases)
    if footer is None:
        raise RecordingError(f"{name} is truncated (no end record after {len(samples)} samples)")
    _check_counts(footer, samples, phases, name)
    return _timeline(header, footer, samples, phases, name)


def _check_magic(first: str, name: str) -> None:
    word, _, version = first.partition(" ")
    if word != MAGIC:
        raise RecordingError(f"{name} is not a memtrim recording")
    if not version.isdigit():
        raise RecordingError(f"{name} is corrupt at line 1: bad format version {version!r}")
    if int(version) > VERSION:
        raise RecordingError(
            f"{name} uses recording format {version}, newer than this memtrim reads "
            f"({VERSION}): upgrade memtrim"
        )


def _decode(line: str, number: int, name: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise RecordingError(f"{name} is corrupt at line {number}: not valid JSON") from None


def _object(line: str, number: int, name: str) -> dict[str, Any]:
    value = _decode(line, number, name)
    if not isinstance(value, dict) or any(key not in value for key in _HEADER_KEYS):
        raise RecordingError(f"{name} is corrupt at line {number}: bad header")
    return value


def _parse_line(
    line: str, number: int, name: str, samples: list[Sample], phases: list[Phase]
) -> dict[str, Any] | None:
    value = _decode(line, number, name)
    try:
        if isinstance(value, list):
            samples.append(_sample(value))
            return None
        if isinstance(value, dict) and "phase" in value:
            phases.append(_phase(value))
            return None
        if isinstance(value, dict) and isinstance(value.get("end"), dict):
            return value["end"]
    except (TypeError, ValueError, KeyError):
        pass
    raise RecordingError(f"{name} is corrupt at line {number}: not a sample, phase or end record")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return float(value)


def _sample(row: list[Any]) -> Sample:
    time, rss, heap, children = row
    pairs = tuple((_int(pid), _int(value)) for pid, value in children)
    return Sample(_float(time), _int(rss), _opt_int(heap), pairs)


def _phase(row: dict[str, Any]) -> Phase:
    if not isinstance(row["phase"], str):
        raise TypeError("phase name")
    return Phase(
        row["phase"],
        _float(row["start"]),
        _float(row["end"]),
        peak_heap=_opt_int(row.get("peak_heap")),
        increment=_opt_int(row.get("increment")),
        peak_rss=_opt_int(row.get("peak_rss")),
        peak_rss_exact=bool(row.get("peak_rss_exact", False)),
        depth=_int(row.get("depth", 0)),
    )


def _check_counts(
    footer: dict[str, Any], samples: list[Sample], phases: list[Phase], name: str
) -> None:
    if footer.get("samples") != len(samples) or footer.get("phases") != len(phases):
        raise RecordingError(
            f"{name} is corrupt: the end record counts {footer.get('samples')} samples and "
            f"{footer.get('phases')} phases, the file holds {len(samples)} and {len(phases)}"
        )


def _timeline(
    header: dict[str, Any],
    footer: dict[str, Any],
    samples: list[Sample],
    phases: list[Phase],
    name: str,
) -> Timeline:
    try:
        duration = footer.get("duration")
        return Timeline(
            samples=tuple(samples),
            phases=tuple(phases),
            start=_float(header["start"]),
            interval=_float(header["interval"]),
            pid=_int(header["pid"]),
            command=tuple(str(arg) for arg in header["command"]),
            metric=str(header["metric"]),
            include_children=bool(header.get("include_children", False)),
            multiprocess=bool(header.get("multiprocess", False)),
            peak_rss=_opt_int(footer.get("peak_rss")),
            exit_code=_opt_int(footer.get("exit_code")),
            duration=None if duration is None else _float(duration),
            meta={str(k): str(v) for k, v in dict(header.get("meta") or {}).items()},
        )
    except (TypeError, ValueError) as exc:
        raise RecordingError(f"{name} is corrupt: bad header or end record ({exc})") from None
