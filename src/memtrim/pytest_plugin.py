"""memtrim's pytest plugin: memory limits per test, a project default, baselines, a table.

Registered through the ``pytest11`` entry point: installing memtrim makes the
markers work, with no flag. pytest-memray's markers run unchanged:

- ``@pytest.mark.limit_memory("24 MB")``: the test fails when the peak of
  what its body allocated (above the level when it started; fixtures left
  out; every thread) passes the limit.
- ``@pytest.mark.limit_leaks("1 MB", filter_fn=None)``: the test fails when
  what its body allocated and still holds after it (after ``gc.collect()``)
  passes the limit. ``filter_fn(stack)`` (optional) keeps the allocations
  whose stack it returns true for; ``stack.frames`` are ``(function,
  filename, lineno)`` tuples, innermost first.

Sizes are pytest-memray's strings: ``"24 MB"`` is 24 x 1024**2 bytes (as
pytest-memray reads it), ``KB``/``MB``/``GB``/``TB`` and ``KiB``/``MiB``/
``GiB``/``TiB`` are all binary, a bare number is bytes.

Options: ``--memtrim-limit SIZE`` (ini ``memtrim_limit``) applies
``limit_memory`` to every test without the marker, ``--memtrim-leak-limit
SIZE`` (ini ``memtrim_leak_limit``) ``limit_leaks``; ``--memtrim`` prints the
tests with the highest peaks at the end (``--memtrim-top N``, default 5).
``--memtrim-dir DIR`` keeps a capture of each measured test (``memtrim report``
opens it). ``--memtrim-baseline FILE`` writes each test's peak, leaks and top lines to
FILE (JSON, to commit) when it does not exist, and compares with it when it
does: ``--memtrim-fail-on-increase PCT`` fails a test whose peak grew more
than PCT % over its baseline, naming the lines that grew.

A test with no limit and no ``--memtrim`` runs untouched: no hook is
installed for it (unless every test is measured: then the hooks stay in for
the session). A measured test is recorded with the call tree (default mode:
exact per line, sampled stacks; exact mode for a leak filter or
``--memtrim-dir``), so that a failure names the lines that held the most at
the peak and one stack; under ``memtrim run`` (a recording already runs)
only the figures are measured.
"""

from __future__ import annotations

import gc
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest

from memtrim.model.units import human

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)(B?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}
_LIMITS = pytest.StashKey["Limits"]()
_BASELINE = pytest.StashKey["Baseline | None"]()
_RESULT = pytest.StashKey["Measured"]()
_FRAMES_SHOWN = 6
_SAMPLE_BYTES = 64 * 1024  # default mode: one sampled stack per 64 KiB on average
_LINES_SHOWN = 5
_OWN_FILE = os.path.abspath(__file__)


def parse_size(text: Any) -> int:
    """``"24 MB"`` -> 25165824 (binary units, as pytest-memray reads them); a
    number is bytes. Raises ValueError for anything else."""
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: must be >= 0")
        return int(text)
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"invalid size {text!r}: use e.g. '24 MB', '512 KiB' or a number of bytes")
    number, power, _binary, _unit = match.groups()
    return int(float(number) * 1024 ** _POWERS[power.upper()])


class StackFrame(NamedTuple):
    """One frame of an allocation's stack (pytest-memray's names)."""

    function: str
    filename: str
    lineno: int


@dataclass(frozen=True)
class Stack:
    """The stack ``limit_leaks``'s ``filter_fn`` is given: innermost frame first."""

    frames: tuple[StackFrame, ...]


@dataclass
class Limits:
    """What one test is held to (None: no limit)."""

    memory: int | None = None
    leaks: int | None = None
    leak_filter: Any = None


@dataclass
class Measured:
    """One test's figures and, when recorded, its lines."""

    peak: int
    leaked: int
    lines_at_peak: list[tuple[int, str]] = field(default_factory=list)  # (bytes, where)
    stack_at_peak: list[str] = field(default_factory=list)
    lines_leaked: list[tuple[int, str]] = field(default_factory=list)
    attributed: bool = False


# ------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memtrim", "memory limits per test (memtrim)")
    group.addoption(
        "--memtrim",
        action="store_true",
        default=False,
        help="measure every test and print those with the highest peaks at the end",
    )
    group.addoption(
        "--memtrim-top",
        type=int,
        default=5,
        metavar="N",
        help="with --memtrim: how many tests to list (default 5)",
    )
    group.addoption(
        "--memtrim-limit",
        default=None,
        metavar="SIZE",
        help="limit_memory(SIZE) for every test without its own marker",
    )
    group.addoption(
        "--memtrim-leak-limit",
        default=None,
        metavar="SIZE",
        help="limit_leaks(SIZE) for every test without its own marker",
    )
    group.addoption(
        "--memtrim-dir",
        default=None,
        metavar="DIR",
        help="keep a capture of each measured test in DIR (open one with memtrim report)",
    )
    group.addoption(
        "--memtrim-baseline",
        default=None,
        metavar="FILE",
        help="write each test's peak and leaks to FILE (JSON), or compare with it if it exists",
    )
    group.addoption(
        "--memtrim-fail-on-increase",
        type=float,
        default=None,
        metavar="PCT",
        help="with --memtrim-baseline: fail a test whose peak grew more than PCT %% over it",
    )
    parser.addini("memtrim_limit", "limit_memory for every test without the marker", default="")
    parser.addini("memtrim_leak_limit", "limit_leaks for every test without the marker", default="")


def _default(config: pytest.Config, option: str, ini: str) -> int | None:
    text = config.getoption(option) or config.getini(ini)
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise pytest.UsageError(f"--{option.replace('_', '-')} / {ini}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "limit_memory(size): fail when the test's peak allocation passes size"
    )
    config.addinivalue_line(
        "markers",
        "limit_leaks(size, filter_fn=None): fail when the test leaves more than size allocated",
    )
    config.stash[_LIMITS] = Limits(
        memory=_default(config, "memtrim_limit", "memtrim_limit"),
        leaks=_default(config, "memtrim_leak_limit", "memtrim_leak_limit"),
    )
    config.stash[_BASELINE] = _read_baseline(config)


def _marker_size(item: pytest.Item, name: str) -> tuple[int | None, Any]:
    marker = item.get_closest_marker(name)
    if marker is None:
        return None, None
    text = marker.args[0] if marker.args else marker.kwargs.get("size", marker.kwargs.get("limit"))
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{name}: {exc}") from None
    filter_fn = marker.kwargs.get("filter_fn")
    if filter_fn is not None and not callable(filter_fn):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{name}: filter_fn is not callable")
    return size, filter_fn


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    defaults = config.stash[_LIMITS]
    for item in items:
        memory, _ = _marker_size(item, "limit_memory")
        leaks, leak_filter = _marker_size(item, "limit_leaks")
        limits = Limits(
            memory if memory is not None else defaults.memory,
            leaks if leaks is not None else defaults.leaks,
            leak_filter,
        )
        if limits.memory is not None or limits.leaks is not None:
            item.stash[_LIMITS] = limits


# ------------------------------------------------------------------ measuring


def _every_test_measured(config: pytest.Config) -> bool:
    limits = config.stash[_LIMITS]
    return bool(
        limits.memory is not None
        or limits.leaks is not None
        or config.getoption("memtrim")
        or config.getoption("memtrim_dir")
        or config.stash[_BASELINE] is not None
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    """When every test is measured, the hooks stay in for the whole loop:
    installing them for each test would cost more than most tests."""
    if not _every_test_measured(session.config) or session.config.option.collectonly:
        yield
        return
    from memtrim.engine import hooks

    handle = hooks.acquire("memtrim pytest plugin (the session)")
    try:
        yield
    finally:
        handle.release()


class _Recording:
    """One test body under the hooks (and the call tree, when it is free).

    ``exact``: every block charged to its full stack (a ``limit_leaks``
    filter needs every leak's stack); otherwise the default mode, exact per
    line with sampled stacks, which costs far less per allocation.
    ``collect``: collect garbage before reading what the test left (only when
    a leak figure is wanted: a collection of a big heap costs tens of ms).
    """

    def __init__(self, exact: bool, collect: bool) -> None:
        from memtrim.engine import calltree, hooks

        self.calltree = calltree
        self.hooks = hooks
        self.collect = collect
        self.handle = hooks.acquire("memtrim pytest plugin")
        self.attributed = False
        self.raw: dict[str, Any] | None = None
        try:
            if not calltree.is_recording():
                calltree.start(exact, 0 if exact else _SAMPLE_BYTES, [_OWN_FILE])
                self.attributed = True
            self.base = hooks.level()
            self.watch = hooks.watch_begin()
        except BaseException:
            self._release()
            raise

    def stop(self, leak_filter: Any, wants_lines: Any) -> Measured:
        """The test's figures; its lines only when ``wants_lines(peak, leaked)``
        (a limit passed, a table or a baseline to fill): reading the tree is
        most of a recording's cost per test."""
        try:
            peak = self.hooks.watch_end(self.watch) - self.base
            if self.collect:
                gc.collect()  # what is only garbage is not a leak
            leaked = self.hooks.level() - self.base
            raw = None
            if self.attributed:
                self.calltree.stop()
                if leak_filter is not None or wants_lines(max(peak, 0), leaked):
                    raw = self.calltree.snapshot()
        finally:
            self._release()
        found = Measured(max(peak, 0), leaked, attributed=self.attributed)
        if raw is not None:
            _attribute(found, raw, leak_filter)
        self.raw = raw
        return found

    def _release(self) -> None:
        if self.attributed:
            self.calltree.clear()
        self.handle.release()


def _stack(raw: dict[str, Any], node: int) -> list[StackFrame]:
    """The frames of a node, innermost first (C frames and thread roots left out)."""
    frames = []
    nodes, slots = raw["nodes"], raw["slots"]
    while node > 0:
        parent, slot, line = nodes[node]
        if slot >= 0:
            filename, qualname, _first = slots[slot]
            frames.append(StackFrame(qualname, filename, line))
        node = parent
    return frames


def _where(frame: StackFrame) -> str:
    path = frame.filename
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:
        pass
    return f"{path}:{frame.lineno} ({frame.function})"


def _attribute(found: Measured, raw: dict[str, Any], leak_filter: Any) -> None:
    """The lines live at the peak, one stack there, and the lines still live."""
    at_peak: dict[StackFrame, int] = {}
    live: dict[StackFrame, int] = {}
    heaviest = (0, -1)
    filtered = 0
    for node, stats in enumerate(raw["stats"]):
        live_b, peak_b = stats[0], stats[4]
        if node == 0 or (live_b <= 0 and peak_b <= 0):
            continue
        frames = _stack(raw, node)
        if not frames:
            continue
        leaf = frames[0]
        at_peak[leaf] = at_peak.get(leaf, 0) + peak_b
        heaviest = max(heaviest, (peak_b, node))
        if live_b > 0 and (leak_filter is None or _keep(leak_filter, frames)):
            live[leaf] = live.get(leaf, 0) + live_b
            filtered += live_b
    if leak_filter is not None:
        found.leaked = filtered
    found.lines_at_peak = _top(at_peak)
    found.lines_leaked = _top(live)
    sampled = raw.get("sampled")
    if sampled is not None:  # default mode: the heaviest sampled stack at the peak
        heaviest = max(((st[4], node) for node, st in enumerate(sampled) if node), default=(0, -1))
    if heaviest[0] > 0 and heaviest[1] > 0:
        frames = _own_frames(_stack(raw, heaviest[1]))
        found.stack_at_peak = [_where(f) for f in frames[:_FRAMES_SHOWN]]


_RUNNER = (os.sep + "_pytest" + os.sep, os.sep + "pluggy" + os.sep)


def _own_frames(frames: list[StackFrame]) -> list[StackFrame]:
    """The frames of the test and what it called: up to pytest's own."""
    for i, frame in enumerate(frames):
        if any(part in frame.filename for part in _RUNNER):
            return frames[:i] or frames
    return frames


def _keep(leak_filter: Any, frames: list[StackFrame]) -> bool:
    try:
        return bool(leak_filter(Stack(tuple(frames))))
    except Exception:  # the filter's own error: count the allocation
        return True


def _top(per_line: dict[StackFrame, int]) -> list[tuple[int, str]]:
    """The largest lines, the ones with at least 1 % of the largest's bytes."""
    ranked = sorted(per_line.items(), key=lambda kv: -kv[1])[:_LINES_SHOWN]
    floor = ranked[0][1] // 100 if ranked else 0
    return [(size, _where(frame)) for frame, size in ranked if size > 0 and size >= floor]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    limits = item.stash.get(_LIMITS, None)
    keep = item.config.getoption("memtrim_dir")
    measured = item.config.getoption("memtrim") or item.config.stash[_BASELINE] is not None or keep
    if limits is None and not measured:
        yield
        return
    config = item.config
    wants_leaks = (
        (limits is not None and limits.leaks is not None)
        or config.getoption("memtrim")
        or config.stash[_BASELINE] is not None
        or bool(keep)
    )
    leak_filter = limits.leak_filter if limits else None
    recording = _Recording(exact=leak_filter is not None or bool(keep), collect=bool(wants_leaks))

    def wants_lines(peak: int, leaked: int) -> bool:
        return bool(measured) or (limits is not None and _passes(limits, peak, leaked))

    try:
        yield
    finally:
        found = recording.stop(leak_filter, wants_lines)
        item.stash[_RESULT] = found
        if keep and recording.raw is not None:
            _keep_capture(item, keep, recording.raw, found)


def _capture_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:180] + ".memtrim"


def _keep_capture(item: pytest.Item, folder: str, raw: dict[str, Any], found: Measured) -> None:
    """The test's recording as a capture of ``memtrim run`` (``memtrim report`` opens it)."""
    import sys

    from memtrim.run.build import build

    code = getattr(getattr(item, "function", None), "__code__", None)

    def is_entry(filename: str, qualname: str) -> bool:  # the test function and below
        return code is None or (filename == code.co_filename and qualname == code.co_qualname)

    try:
        os.makedirs(folder, exist_ok=True)
        capture = build(
            raw,
            meta={"command": [item.nodeid], "exact": True, "test": item.nodeid},
            peak_bytes=found.peak,
            peak_time=0.0,
            end_bytes=max(found.leaked, 0),
            timeline=[],
            thread_names={},
            is_entry=is_entry,
            root=str(item.config.rootpath),
            sys_path=list(sys.path),
        )
        capture.save(os.path.join(folder, _capture_name(item.nodeid)))
    except Exception as exc:  # the test's result stands; the file is what failed
        item.config.issue_config_time_warning(
            pytest.PytestWarning(f"memtrim: no capture for {item.nodeid}: {exc}"), stacklevel=2
        )


def _passes(limits: Limits, peak: int, leaked: int) -> bool:
    """Does a figure pass its limit?"""
    return (limits.memory is not None and peak > limits.memory) or (
        limits.leaks is not None and leaked > limits.leaks
    )


def _failure(limits: Limits, found: Measured) -> str | None:
    lines: list[str] = []
    if limits.memory is not None and found.peak > limits.memory:
        lines.append(
            f"Test was limited to {human(limits.memory)} ({limits.memory:,} B) but allocated "
            f"{human(found.peak)} ({found.peak:,} B) at its peak"
        )
        if found.lines_at_peak:
            lines.append("Lines that held the most at the peak:")
            lines += [f"  {human(size):>10}  {where}" for size, where in found.lines_at_peak]
        if found.stack_at_peak:
            lines.append("The stack that held the most at the peak (innermost first):")
            lines += [f"  {frame}" for frame in found.stack_at_peak]
    if limits.leaks is not None and found.leaked > limits.leaks:
        lines.append(
            f"Test was limited to {human(limits.leaks)} ({limits.leaks:,} B) of leaks but left "
            f"{human(found.leaked)} ({found.leaked:,} B) allocated"
        )
        if found.lines_leaked:
            lines.append("Lines that still hold it:")
            lines += [f"  {human(size):>10}  {where}" for size, where in found.lines_leaked]
    if lines and not found.attributed:
        lines.append("(lines not known: a memtrim recording of the whole run is on)")
    return "\n".join(lines) or None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    if call.when != "call":
        return
    found = item.stash.get(_RESULT, None)
    if found is None:
        return
    limits = item.stash.get(_LIMITS, None)
    report = outcome.get_result()
    # the figures travel with the report: the --memtrim table is built from the
    # reports, so pytest-xdist's workers' tests are in the controller's table
    report.user_properties.append(
        (
            "memtrim",
            {
                "peak": found.peak,
                "leaked": max(found.leaked, 0),
                "line": found.lines_at_peak[0][1] if found.lines_at_peak else "",
            },
        )
    )
    baseline = item.config.stash[_BASELINE]
    parts = [_failure(limits, found) if limits is not None else None]
    if baseline is not None:
        parts.append(baseline.check(item, found))
    message = "\n".join(p for p in parts if p) or None
    if message is None:
        return
    if report.passed:
        report.outcome = "failed"
        report.longrepr = message
    else:  # the test's own failure stays as it is; memtrim's says its part beside it
        report.sections.append(("memtrim", message))


# ------------------------------------------------------------------ baselines

BASELINE_FORMAT = "memtrim-pytest-baseline"
BASELINE_VERSION = 1


@dataclass
class Baseline:
    """Per-test peaks and leaks kept in a JSON file a team can commit.

    The file is written when it does not exist (``entries`` empty, ``writing``)
    and compared with otherwise: with ``increase`` (a percentage), a test
    whose peak grew more than that fails, naming the lines that grew.
    """

    path: str
    increase: float | None
    writing: bool
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def check(self, item: pytest.Item, found: Measured) -> str | None:
        entry = {
            "peak": found.peak,
            "leaked": max(found.leaked, 0),
            "lines": {where: size for size, where in found.lines_at_peak},
        }
        self.seen[item.nodeid] = entry
        before = self.entries.get(item.nodeid)
        if self.writing or self.increase is None or before is None:
            return None
        grown_leaks = self._leaks_grew(before, entry)
        limit = before["peak"] * (1 + self.increase / 100)
        if found.peak <= limit:
            return grown_leaks
        grown = sorted(
            (
                (size - before["lines"].get(where, 0), where)
                for where, size in entry["lines"].items()
            ),
            reverse=True,
        )
        lines = [
            f"Peak grew from {human(before['peak'])} ({before['peak']:,} B) in the baseline to "
            f"{human(found.peak)} ({found.peak:,} B): more than {self.increase:g} %"
        ]
        lines += [f"  +{human(d):>9}  {where}" for d, where in grown[:_LINES_SHOWN] if d > 0]
        if grown_leaks:
            lines.append(grown_leaks)
        return "\n".join(lines)

    def _leaks_grew(self, before: dict[str, Any], entry: dict[str, Any]) -> str | None:
        """Leaks above the baseline's by more than the percentage (and 1 KiB:
        pytest's own few hundred bytes move from run to run)."""
        old = int(before.get("leaked", 0) or 0)
        new = entry["leaked"]
        assert self.increase is not None
        if new <= old * (1 + self.increase / 100) or new - old <= 1024:
            return None
        return (
            f"Leaks grew from {human(old)} ({old:,} B) in the baseline to {human(new)} "
            f"({new:,} B): more than {self.increase:g} %"
        )

    def write(self) -> None:
        data = {
            "format": BASELINE_FORMAT,
            "version": BASELINE_VERSION,
            "tests": self.seen,
        }
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1, sort_keys=True)
            out.write("\n")
        os.replace(tmp, self.path)


def _read_baseline(config: pytest.Config) -> Baseline | None:
    path = config.getoption("memtrim_baseline")
    increase = config.getoption("memtrim_fail_on_increase")
    if increase is not None and (path is None or increase < 0):
        raise pytest.UsageError(
            "--memtrim-fail-on-increase needs --memtrim-baseline FILE and a percentage >= 0"
        )
    if path is None:
        return None
    if not os.path.exists(path):
        return Baseline(path, increase, writing=True)
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
        if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
            raise ValueError("not a memtrim baseline")
        if data.get("version") != BASELINE_VERSION:
            raise ValueError(
                f"version {data.get('version')!r}, this memtrim reads {BASELINE_VERSION}"
            )
        tests = data["tests"]
        for nodeid, entry in tests.items():
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("peak"), int)
                and isinstance(entry.get("lines", {}), dict)
            ):
                raise ValueError(f"bad entry for {nodeid!r}")
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise pytest.UsageError(f"--memtrim-baseline {path}: {exc}") from None
    return Baseline(path, increase, writing=False, entries=tests)


def pytest_sessionfinish(session: pytest.Session) -> None:
    baseline = session.config.stash.get(_BASELINE, None)
    if baseline is None or not baseline.seen or not baseline.writing:
        return  # an existing baseline is only compared with: delete it to write it again
    try:
        baseline.write()
    except OSError as exc:
        session.config.get_terminal_writer().line(
            f"memtrim: could not write {baseline.path}: {exc}"
        )


# ------------------------------------------------------------------ the table


def _measured_reports(terminalreporter: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "memtrim" and isinstance(value, dict):
                    found.append((report.nodeid, value))
    return found


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.getoption("memtrim"):
        return
    measured = _measured_reports(terminalreporter)
    measured.sort(key=lambda pair: -int(pair[1].get("peak", 0)))
    top = max(config.getoption("memtrim_top"), 0)
    terminalreporter.write_sep("=", "memtrim: the tests with the highest peaks")
    if not measured:
        terminalreporter.write_line("no test was measured")
        return
    for nodeid, figures in measured[:top]:
        line = figures.get("line", "")
        peak, left = human(figures.get("peak", 0)), human(figures.get("leaked", 0))
        terminalreporter.write_line(
            f"{peak:>10} peak, {left:>10} left  {nodeid}"
            + (f"\n{'':>12}top line: {line}" if line else "")
        )
