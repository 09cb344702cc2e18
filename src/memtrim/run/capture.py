"""The whole-program profile (``memtrim run``) as plain data, and its file format.

A :class:`Capture` is aggregated, not an event log: its size depends on how
much code ran, not on how long it ran.

- ``frames``: the distinct code locations (file, function, line, and the
  function's first line).
- ``nodes``: exact attribution. Each node is a frame under a parent node (or a
  thread root, ``frame == -1``); its :class:`Counts` say how many bytes and
  blocks were live at the peak (``peak``), still allocated at exit
  (``at_exit``: leaks, caches, module globals), and
  allocated over the whole run (``allocated``), charged to that node itself
  (not to its children). In ``exact`` mode the nodes form full call stacks; in
  the default mode each node is one frame under its thread's root: the exact
  figures per line.
- ``stacks``: full call stacks for the flame graph. In ``exact`` mode the same
  as ``nodes``; in the default mode, unbiased estimates from allocations
  sampled on average once every ``sample_bytes`` bytes.

- ``root``: the directory paths are told relative to (the program's
  directory, or the working directory), ``sys_path`` the program's
  ``sys.path`` and ``seed`` the seed of the stack sampling (``None``: not
  known): what :meth:`Capture.findings` needs to name lines so that they match
  across checkouts.

Each :class:`Counts` also says how many of its bytes are *native*: blocks
from a library's C allocator (``malloc``, ``mmap``...), not Python objects or
numpy buffers.

File format (version 3): memtrim's file scheme (:mod:`memtrim.model.files`):
the 16 bytes ``b"MEMTRIM-CAPTURE\\n"``, a 4-byte big-endian format version, a
4-byte big-endian flags word (0), an 8-byte big-endian length of the body,
then the body: zlib-compressed UTF-8 JSON of :meth:`Capture.to_dict`. Version
2 files (no native bytes: 0) and version 1 files (no root, ``sys.path``, seed
or first lines either) are still read. See
``docs/run.md``.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from memtrim.model import files

if TYPE_CHECKING:
    from memtrim.model.findings import Finding
    from memtrim.model.findings import Site as LineSite

FILE_KIND = "capture"
MAGIC = files.KINDS[FILE_KIND].magic
FORMAT_VERSION = files.KINDS[FILE_KIND].version
_HEADER = files.HEADER
VIEWS = ("peak", "at_exit", "allocated")
#: what each view is called in reports
VIEW_LABELS = {
    "peak": "Live at the peak",
    "at_exit": "Still allocated at exit",
    "allocated": "Allocated over the run",
}


class CaptureError(files.FormatError):
    """A capture file that cannot be read: missing, truncated, corrupt or too new."""


# Plain classes, not dataclasses: a dataclass compiles its methods when its
# module is imported, and this module is imported on every `memtrim run`.


class Frame(NamedTuple):
    """One code location; ``first_line`` is its function's (0: not known)."""

    filename: str
    function: str
    lineno: int
    first_line: int = 0

    def label(self) -> str:
        """``function (file:line)``."""
        return f"{self.function} ({self.filename}:{self.lineno})"


class Counts:
    """Bytes and number of blocks; ``native``: the part of the bytes from C allocators."""

    __slots__ = ("bytes", "count", "native")

    def __init__(self, bytes: int = 0, count: int = 0, native: int = 0) -> None:
        self.bytes = bytes
        self.count = count
        self.native = native

    def add(self, other: Counts) -> None:
        """Add ``other`` into this one."""
        self.bytes += other.bytes
        self.count += other.count
        self.native += other.native

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counts):
            return NotImplemented
        return (self.bytes, self.count, self.native) == (other.bytes, other.count, other.native)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Counts(bytes={self.bytes}, count={self.count}, native={self.native})"


class Node:
    """A frame in the call tree, with the bytes charged to it in each view."""

    __slots__ = ("allocated", "at_exit", "frame", "parent", "peak", "thread")

    def __init__(
        self,
        parent: int,  # index of the parent node, -1 for a thread root
        frame: int,  # index into Capture.frames, -1 for a thread root
        thread: int,  # index into Capture.threads
        peak: Counts | None = None,
        at_exit: Counts | None = None,
        allocated: Counts | None = None,
    ) -> None:
        self.parent = parent
        self.frame = frame
        self.thread = thread
        self.peak = Counts() if peak is None else peak
        self.at_exit = Counts() if at_exit is None else at_exit
        self.allocated = Counts() if allocated is None else allocated

    def view(self, name: str) -> Counts:
        """The counts of one view: ``peak``, ``at_exit`` or ``allocated``."""
        return getattr(self, name)

    def _key(self) -> tuple[Any, ...]:
        return (self.parent, self.frame, self.thread, self.peak, self.at_exit, self.allocated)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Node(parent={self.parent}, frame={self.frame}, thread={self.thread}, "
            f"peak={self.peak}, at_exit={self.at_exit}, allocated={self.allocated})"
        )


class Capture:
    """Everything ``memtrim run`` recorded about one process."""

    FILE_KIND = FILE_KIND

    __slots__ = (
        "end_bytes",
        "frames",
        "meta",
        "nodes",
        "peak_bytes",
        "peak_time",
        "root",
        "seed",
        "sources",
        "stacks",
        "sys_path",
        "threads",
        "timeline",
    )

    def __init__(
        self,
        meta: dict[str, Any],
        peak_bytes: int,
        peak_time: float,
        end_bytes: int,
        frames: list[Frame],
        threads: list[str],
        nodes: list[Node],
        stacks: list[Node],
        timeline: list[tuple[float, int, int]],  # (seconds since start, heap, RSS bytes)
        sources: dict[str, dict[int, str]] | None = None,
        root: str = "",
        sys_path: list[str] | None = None,
        seed: int | None = None,
    ) -> None:
        self.meta = meta
        self.peak_bytes = peak_bytes
        self.peak_time = peak_time
        self.end_bytes = end_bytes
        self.frames = frames
        self.threads = threads
        self.nodes = nodes
        self.stacks = stacks
        self.timeline = timeline
        self.sources = {} if sources is None else sources
        self.root = root  # "" when not recorded (version 1 captures)
        self.sys_path = [] if sys_path is None else sys_path
        self.seed = seed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Capture):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Capture(peak_bytes={self.peak_bytes}, frames={len(self.frames)}, "
            f"nodes={len(self.nodes)}, stacks={len(self.stacks)})"
        )

    @property
    def exact(self) -> bool:
        """Was every block attributed to its full stack (``--exact``)?"""
        return bool(self.meta.get("exact"))

    def stack_of(self, index: int, nodes: list[Node] | None = None) -> list[Frame]:
        """Frames from the outermost call to node ``index`` (thread roots left out)."""
        nodes = self.nodes if nodes is None else nodes
        out = []
        while index >= 0:
            node = nodes[index]
            if node.frame >= 0:
                out.append(self.frames[node.frame])
            index = node.parent
        out.reverse()
        return out

    def site(self, frame: Frame) -> LineSite:
        """The :class:`~memtrim.model.Site` of a frame: its path relative to
        :attr:`root` (or to its ``sys.path`` entry), its line within its function."""
        from memtrim.model.findings import Site

        source = self.sources.get(frame.filename, {}).get(frame.lineno, "")
        return Site.at(
            frame.filename,
            frame.function,
            frame.lineno,
            frame.first_line or None,
            source,
            self.root or None,
            self.sys_path,
        )

    def findings(self) -> list[Finding]:
        """Every figure of the capture, in one shape.

        Per view (``peak``, ``at_exit``, ``allocated``): the process-wide
        ``heap`` figure (the heap's peak and level at exit as the engine
        counted them; for ``allocated``, all bytes allocated), then each line
        with bytes (``line``, largest first), then what no line can be charged
        with (``unattributed``, named by reason and thread). Per-line figures
        are exact in every mode.
        """
        from memtrim.model.findings import Amount, Finding

        out: list[Finding] = []
        for view in VIEWS:
            lines = sites(self, view)
            outside = unattributed(self, view)
            count = sum(s.count for s in lines) + sum(u.count for u in outside)
            whole = {"peak": self.peak_bytes, "at_exit": self.end_bytes}.get(
                view, view_total(self, view)
            )
            out.append(Finding("heap", None, view, Amount(whole, count)))
            out += [
                Finding("line", self.site(s.frame), view, Amount(s.bytes, s.count)) for s in lines
            ]
            out += [
                Finding(
                    "unattributed",
                    None,
                    view,
                    Amount(u.bytes, u.count),
                    name=f"{u.reason}; thread {u.thread}",
                )
                for u in outside
            ]
        return out

    def save(self, path: str) -> None:
        """Write the capture file (:mod:`memtrim.model.files`)."""
        files.dump(self, path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (the body of the capture file)."""
        return {
            "meta": self.meta,
            "peak_bytes": self.peak_bytes,
            "peak_time": self.peak_time,
            "end_bytes": self.end_bytes,
            "frames": [[f.filename, f.function, f.lineno, f.first_line] for f in self.frames],
            "threads": self.threads,
            "nodes": [_node_row(n) for n in self.nodes],
            "stacks": None if self.stacks is self.nodes else [_node_row(n) for n in self.stacks],
            "timeline": [list(point) for point in self.timeline],
            "sources": {
                name: {str(k): v for k, v in lines.items()} for name, lines in self.sources.items()
            },
            "root": self.root,
            "sys_path": self.sys_path,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: int = FORMAT_VERSION) -> Capture:
        """The inverse of :meth:`to_dict`; ``version`` 1 data is migrated.

        Every field is checked for its type and range, and every index (a
        node's parent, frame and thread) for pointing where it may, so that a
        crafted or damaged file is refused with one line instead of failing
        somewhere in a report.
        """
        if not isinstance(data, dict):
            raise CaptureError("malformed capture data (not an object)")
        problem = _problem(data, version)
        if problem:
            raise CaptureError(f"malformed capture data ({problem})")
        try:
            nodes = [_node_from_row(row) for row in data["nodes"]]
            stacks = (
                nodes if data.get("stacks") is None else [_node_from_row(r) for r in data["stacks"]]
            )
            seed = data.get("seed") if version >= 2 else None
            return cls(
                meta=dict(data["meta"]),
                peak_bytes=int(data["peak_bytes"]),
                peak_time=float(data["peak_time"]),
                end_bytes=int(data["end_bytes"]),
                frames=[_frame_from_row(row) for row in data["frames"]],
                threads=[str(t) for t in data["threads"]],
                nodes=nodes,
                stacks=stacks,
                timeline=[(float(t), int(h), int(r)) for t, h, r in data["timeline"]],
                sources={
                    name: {int(k): str(v) for k, v in lines.items()}
                    for name, lines in data.get("sources", {}).items()
                },
                root=str(data.get("root") or "") if version >= 2 else "",
                sys_path=[str(p) for p in data.get("sys_path") or ()] if version >= 2 else [],
                seed=None if seed is None else int(seed),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CaptureError(f"malformed capture data ({exc})") from None


def _is_int(value: Any, low: int | None = None) -> bool:
    return type(value) is int and (low is None or value >= low)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value >= 0


# The most rows memtrim writes of each list (the engine's hard limit of
# 1,048,576 call-tree nodes, the timeline decimated to 2,000 points), with
# room: a crafted file's counts are refused before they are read.
_MOST = {
    "frames": 2**22,
    "threads": 2**20,
    "nodes": 2**21,
    "stacks": 2**21,
    "timeline": 10_000,
    "sources": 2**20,
}


def _problem(data: dict[str, Any], version: int) -> str | None:
    """What is wrong with capture data, or None: types, ranges and indexes."""
    for key in ("meta", "peak_bytes", "peak_time", "end_bytes", "frames", "threads", "nodes"):
        if key not in data:
            return f"no {key!r}"
    if not isinstance(data["meta"], dict):
        return "'meta' is not an object"
    wrong = _meta_problem(data["meta"])
    if wrong:
        return wrong
    if _holds_not_a_number(data["meta"]):
        return "'meta' holds NaN or Infinity"
    if not (_is_int(data["peak_bytes"], 0) and _is_int(data["end_bytes"], 0)):
        return "the peak and exit bytes must be whole numbers >= 0"
    if not _is_number(data["peak_time"]):
        return "the peak time must be a number of seconds >= 0"
    frames, threads = data["frames"], data["threads"]
    for key, most in _MOST.items():
        rows = data.get(key)
        if isinstance(rows, list | dict) and len(rows) > most:
            return f"{len(rows)} {key}: more than memtrim ever writes ({most})"
    if not isinstance(frames, list) or not all(_frame_ok(row, version) for row in frames):
        return "a frame is not [file, function, line, first line]"
    if not isinstance(threads, list) or not all(isinstance(name, str) for name in threads):
        return "the thread names are not strings"
    for key in ("nodes", "stacks"):
        rows = data.get(key)
        if key == "stacks" and rows is None:
            continue
        if not isinstance(rows, list):
            return f"{key!r} is not a list"
        for index, row in enumerate(rows):
            wrong = _node_problem(row, index, len(frames), len(threads), version)
            if wrong:
                return f"{key} row {index}: {wrong}"
    timeline = data.get("timeline", [])
    if not isinstance(timeline, list) or not all(
        isinstance(point, list)
        and len(point) == 3
        and _is_number(point[0])
        and _is_int(point[1])
        and _is_int(point[2], 0)
        for point in timeline
    ):
        return "a timeline point is not [seconds, heap bytes, RSS bytes]"
    sources = data.get("sources", {})
    if not isinstance(sources, dict) or not all(
        isinstance(lines, dict)
        and all(
            key.isascii() and key.isdigit() and isinstance(text, str) for key, text in lines.items()
        )
        for lines in sources.values()
    ):
        return "'sources' is not {file: {line: text}}"
    if version >= 2:
        if not isinstance(data.get("root", ""), str):
            return "'root' is not a string"
        sys_path = data.get("sys_path", [])
        if not isinstance(sys_path, list) or not all(isinstance(p, str) for p in sys_path):
            return "'sys_path' is not a list of strings"
        if data.get("seed") is not None and not _is_int(data["seed"], 0):
            return "'seed' is not a whole number >= 0"
    return None


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_count(value: Any) -> bool:
    return _is_int(value, 0)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_exit(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("kind"), str)
        and _is_int(value.get("code"))
        and isinstance(value.get("message", ""), str)
        and _is_int(value.get("rss", 0), 0)
    )


def _is_gaps(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(view), list)
        and len(value[view]) >= 1
        and all(_is_int(n, 0) for n in value[view])
        for view in ("peak", "allocated")
    )


def _is_rss(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    from memtrim.model.rss import RssBreakdown

    for when in ("peak", "at_exit"):
        if when in value:
            found = value[when]
            try:
                if not isinstance(found, dict) or not isinstance(found.get("parts"), dict):
                    return False
                RssBreakdown.from_dict(found)
            except (KeyError, TypeError, ValueError, AttributeError):
                return False
            if "heap" in found and not _is_int(found["heap"], 0):
                return False
    return True


def _is_processes(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and _is_count(value.get("count"))
        and _is_count(value.get("peak"))
        and _is_number(value.get("time"))
        and isinstance(value.get("at_peak"), list)
        and all(
            isinstance(part, dict)
            and _is_count(part.get("pid"))
            and _is_count(part.get("heap"))
            and _is_str(part.get("file"))
            for part in value["at_peak"]
        )
    )


# What the reports read in a capture's meta, and what each must be; other
# keys are kept as they are (plain JSON, finite numbers: see decode_body).
_META_CHECKS: dict[str, tuple[Any, str]] = {
    "command": (_is_strings, "a list of strings"),
    "exit": (_is_exit, "{kind, code[, message, rss]}"),
    "duration": (_is_number, "a number of seconds >= 0"),
    "interval": (_is_number, "a number of seconds >= 0"),
    "started": (_is_number, "a time >= 0"),
    "sample_bytes": (_is_count, "a whole number >= 0"),
    "tree_full_blocks": (_is_count, "a whole number >= 0"),
    "native_untracked_maps": (_is_count, "a whole number >= 0"),
    "pid": (_is_count, "a whole number >= 0"),
    "parent_pid": (_is_count, "a whole number >= 0"),
    "exact": (_is_bool, "true or false"),
    "native": (_is_bool, "true or false"),
    "native_frames": (_is_bool, "true or false"),
    "native_error": (_is_str, "a string"),
    "memtrim": (_is_str, "a string"),
    "python": (_is_str, "a string"),
    "platform": (_is_str, "a string"),
    "observer_errors": (_is_strings, "a list of strings"),
    "stack_gaps": (_is_gaps, "{peak: [bytes, ...], allocated: [bytes, ...]}"),
    "rss": (_is_rss, "{peak, at_exit} RSS breakdowns"),
    "partial": (lambda value: isinstance(value, dict), "an object"),
    "forked_at": (_is_number, "a number of seconds >= 0"),
    "fork_level": (_is_count, "a whole number >= 0"),
    "processes": (_is_processes, "{count, peak, time, at_peak: [{pid, heap, file}]}"),
    "advice": (lambda value: isinstance(value, list), "a list"),
}


def _meta_problem(meta: dict[str, Any]) -> str | None:
    for key, (check, what) in _META_CHECKS.items():
        if key in meta and not check(meta[key]):
            return f"meta {key!r} is not {what}"
    return None


def _frame_ok(row: Any, version: int) -> bool:
    size = 3 if version == 1 else 4
    if type(row) is not list or len(row) not in (3, size):
        return False
    filename, function, lineno, *first = row
    return (
        type(filename) is str
        and type(function) is str
        and type(lineno) is int
        and lineno >= 0
        and (not first or (type(first[0]) is int and first[0] >= 0))
    )


_INTS_ONLY = {int}  # the types of a node row's values (bool is not int here)


def _node_problem(row: Any, index: int, frames: int, threads: int, version: int) -> str | None:
    # (this runs for every node of a capture: plain comparisons, no generator)
    size = 12 if version >= 3 else 9
    if type(row) is not list or len(row) != size or set(map(type, row)) != _INTS_ONLY:
        return f"not {size} whole numbers"
    parent, frame, thread = row[0], row[1], row[2]
    if not (parent == -1 or 0 <= parent < index):
        return f"parent {parent} is not an earlier node"
    if not -1 <= frame < frames:
        return f"frame {frame} does not exist"
    if not 0 <= thread < threads:
        return f"thread {thread} does not exist"
    if min(row[3:]) < 0:
        return "negative bytes or count"
    if size == 12 and (row[5] > row[3] or row[8] > row[6] or row[11] > row[9]):
        return "more native bytes than bytes"
    return None


def _frame_from_row(row: list[Any]) -> Frame:
    if len(row) == 3:  # version 1: no first line
        filename, function, lineno = row
        return Frame(str(filename), str(function), int(lineno))
    filename, function, lineno, first = row
    return Frame(str(filename), str(function), int(lineno), int(first))


def _node_row(node: Node) -> list[int]:
    return [
        node.parent,
        node.frame,
        node.thread,
        node.peak.bytes,
        node.peak.count,
        node.peak.native,
        node.at_exit.bytes,
        node.at_exit.count,
        node.at_exit.native,
        node.allocated.bytes,
        node.allocated.count,
        node.allocated.native,
    ]


def _node_from_row(row: list[int]) -> Node:
    # the row was checked (_node_problem): whole numbers of the right count
    if len(row) == 9:  # version 1 and 2: no native bytes
        parent, frame, thread, pb, pc, lb, lc, ab, ac = row
        return Node(parent, frame, thread, Counts(pb, pc), Counts(lb, lc), Counts(ab, ac))
    parent, frame, thread, pb, pc, pn, lb, lc, ln, ab, ac, an = row
    return Node(parent, frame, thread, Counts(pb, pc, pn), Counts(lb, lc, ln), Counts(ab, ac, an))


# ------------------------------------------------------------------ the file


def encode_body(capture: Capture) -> bytes:
    """The body of the capture file (before compression)."""
    return json.dumps(capture.to_dict(), separators=(",", ":")).encode()


class _NotANumber:
    """What ``NaN`` and ``Infinity`` are read as: not JSON, and no number of a
    capture's may be one, so that every check refuses it (and a report of the
    capture could not be valid JSON)."""

    __slots__ = ()


_NOT_A_NUMBER = _NotANumber()


def _not_a_number(name: str) -> Any:
    return _NOT_A_NUMBER


def _holds_not_a_number(value: Any) -> bool:
    todo = [value]
    while todo:  # iterative: nesting can be deep
        item = todo.pop()
        if item is _NOT_A_NUMBER:
            return True
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def decode_body(body: bytes, version: int, name: str = "capture") -> Capture:
    """A capture from the body of its file, any version up to :data:`FORMAT_VERSION`."""
    try:
        payload = json.loads(body, parse_constant=_not_a_number)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CaptureError(f"{name} is corrupt") from None
    if not isinstance(payload, dict):
        raise CaptureError(f"{name} is corrupt")
    try:
        return Capture.from_dict(payload, version)
    except CaptureError as exc:
        raise CaptureError(f"{name} is corrupt: {exc}") from None


def dumps(capture: Capture) -> bytes:
    """Serialize to the versioned file format."""
    return files.pack(FILE_KIND, encode_body(capture))


def loads(data: bytes, name: str = "capture") -> Capture:
    """Parse the file format; :class:`CaptureError` says what is wrong."""
    try:
        _, version, body = files.unpack(data, name, expect=FILE_KIND)
    except files.FormatError as exc:
        raise CaptureError(str(exc)) from None
    return decode_body(body, version, name)


def read(path: str) -> Capture:
    """Load a capture file."""
    try:
        data = files.read_bytes(path, "capture file")
    except files.FormatError as exc:
        raise CaptureError(str(exc)) from None
    return loads(data, path)


# --------------------------------------------------------------- analysis


class Site(NamedTuple):
    """One line of code in one view: the bytes and blocks charged to it."""

    frame: Frame
    bytes: int
    count: int
    stack: tuple[Frame, ...]  # a representative full stack ending at this line
    share: float  # of the view's total
    native: int = 0  # of ``bytes``, from C allocators


def view_total(capture: Capture, view: str) -> int:
    """Bytes in a view: live at the peak, live at exit, or allocated in all."""
    return sum(node.view(view).bytes for node in capture.nodes)


def sites(capture: Capture, view: str, limit: int | None = None) -> list[Site]:
    """Per line of code, largest first: the exact figures of ``view``."""
    _check_view(view)
    totals: dict[int, list[int]] = {}
    whole = 0
    for node in capture.nodes:
        counts = node.view(view)
        whole += counts.bytes
        if node.frame >= 0 and (counts.bytes or counts.count):
            acc = totals.get(node.frame)
            if acc is None:
                totals[node.frame] = [counts.bytes, counts.count, counts.native]
            else:
                acc[0] += counts.bytes
                acc[1] += counts.count
                acc[2] += counts.native
    order = lambda item: (-item[1][0], item[0])  # noqa: E731  # largest first, then by frame
    if limit is None:
        ranked = sorted(totals.items(), key=order)
    else:  # a big program has 100,000s of lines: keep the top without sorting them all
        ranked = heapq.nsmallest(limit, totals.items(), key=order)
    ranked = [item for item in ranked if item[1][0] > 0]
    stacks = _heaviest_stacks(capture, view, {frame for frame, _ in ranked})
    whole = max(whole, 1)
    return [
        Site(
            capture.frames[frame],
            size,
            count,
            stacks.get(frame) or (capture.frames[frame],),
            size / whole,
            native,
        )
        for frame, (size, count, native) in ranked
    ]


def is_cframe(frame: Frame) -> bool:
    """A C function's frame (``memtrim run --native``): no line, no first line."""
    return frame.lineno == 0 and frame.first_line == 0


def _with_cframes(capture: Capture, view: str) -> list[Counts]:
    """Per node of ``capture.stacks``: its own counts plus those of the C frames
    below it (``--native``), so that a line's stacks weigh what it allocated."""
    nodes = capture.stacks
    out = [Counts(n.view(view).bytes, n.view(view).count) for n in nodes]
    cframe = [n.frame >= 0 and is_cframe(capture.frames[n.frame]) for n in nodes]
    if not any(cframe):
        return out
    for index in range(len(nodes) - 1, -1, -1):  # children come after parents
        parent = nodes[index].parent
        if cframe[index] and parent >= 0:
            out[parent].add(out[index])
    return out


def _heaviest_stacks(capture: Capture, view: str, frames: set[int]) -> dict[int, tuple[Frame, ...]]:
    """For each of ``frames``, the stack of its heaviest node in ``capture.stacks``."""
    best: dict[int, tuple[int, int]] = {}
    below = _with_cframes(capture, view) if frames else []
    for index, node in enumerate(capture.stacks):
        if node.frame in frames:
            weight = below[index].bytes
            if weight > best.get(node.frame, (-1, -1))[0]:
                best[node.frame] = (weight, index)
    return {
        frame: tuple(capture.stack_of(index, capture.stacks)) for frame, (_, index) in best.items()
    }


class Unattributed(NamedTuple):
    """Bytes of a view that no line of Python code can be charged with."""

    reason: str
    thread: str
    bytes: int
    count: int


# the pseudo-thread the capture builder gives blocks allocated without the GIL
NOGIL_THREAD = "allocated without the GIL"
# the prefix of the names of threads that never ran Python (a BLAS worker)
NATIVE_THREAD = "native thread"


def unattributed(capture: Capture, view: str) -> list[Unattributed]:
    """What a view holds outside any line, per thread, largest first.

    Blocks allocated without the GIL (C code that released it); blocks made by
    C code with no Python frame running in the thread; and, in a program with
    more than a million distinct lines, blocks that found the call tree full.
    """
    _check_view(view)
    full = bool(capture.meta.get("tree_full_blocks"))
    out = []
    for node in capture.nodes:
        counts = node.view(view)
        if node.frame >= 0 or not (counts.bytes or counts.count):
            continue
        thread = capture.threads[node.thread]
        if thread == NOGIL_THREAD:
            reason = "allocated without the GIL"
        elif thread.startswith(NATIVE_THREAD):
            reason = "a thread that never ran Python"
        elif full:
            reason = "no Python frame, or the call tree was full"
        else:
            reason = "no Python frame running"
        out.append(Unattributed(reason, thread, counts.bytes, counts.count))
    return sorted(out, key=lambda u: -u.bytes)


def by_thread(capture: Capture, view: str) -> list[tuple[str, int, int]]:
    """``(thread name, bytes, blocks)`` of a view per thread, largest first."""
    _check_view(view)
    totals: dict[int, list[int]] = {}
    for node in capture.nodes:
        counts = node.view(view)
        if counts.bytes or counts.count:
            acc = totals.setdefault(node.thread, [0, 0])
            acc[0] += counts.bytes
            acc[1] += counts.count
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])
    return [(capture.threads[thread], size, count) for thread, (size, count) in ranked]


class StackSite(NamedTuple):
    """One call stack ending at a line, with the bytes charged there through it."""

    stack: tuple[Frame, ...]
    bytes: int
    count: int


def stacks_at(capture: Capture, view: str, frame: Frame, limit: int = 3) -> list[StackSite]:
    """The heaviest call stacks that end at ``frame``'s line, largest first.

    Exact in ``--exact`` captures; estimates from the sampled stacks otherwise.
    """
    _check_view(view)
    try:
        wanted = capture.frames.index(frame)
    except ValueError:
        return []
    below = _with_cframes(capture, view)
    found = [
        (below[index], index)
        for index, node in enumerate(capture.stacks)
        if node.frame == wanted and below[index].bytes > 0
    ]
    found.sort(key=lambda item: -item[0].bytes)
    return [
        StackSite(tuple(capture.stack_of(index, capture.stacks)), counts.bytes, counts.count)
        for counts, index in found[:limit]
    ]


class StackTree:
    """A call tree for a flame graph: cumulative bytes per node, children sorted."""

    __slots__ = ("children", "frame", "name", "self_bytes", "total_bytes")

    def __init__(
        self,
        name: str,
        frame: Frame | None,
        self_bytes: int = 0,
        total_bytes: int = 0,
        children: list[StackTree] | None = None,
    ) -> None:
        self.name = name
        self.frame = frame
        self.self_bytes = self_bytes
        self.total_bytes = total_bytes
        self.children = [] if children is None else children

    def __repr__(self) -> str:
        return f"StackTree({self.name!r}, total_bytes={self.total_bytes})"


def stack_tree(capture: Capture, view: str) -> StackTree:
    """The ``stacks`` call tree of a view, rooted at "all", then threads."""
    _check_view(view)
    trees: list[StackTree] = []
    for node in capture.stacks:
        frame = capture.frames[node.frame] if node.frame >= 0 else None
        name = frame.function if frame else f"thread {capture.threads[node.thread]}"
        trees.append(StackTree(name, frame, max(node.view(view).bytes, 0)))
    root = StackTree("all", None)
    for index, node in enumerate(capture.stacks):
        parent = trees[node.parent] if node.parent >= 0 else root
        parent.children.append(trees[index])
    _sum_tree(root)
    return root


def _sum_tree(root: StackTree) -> None:
    order: list[StackTree] = []
    todo = [root]
    while todo:  # iterative: call trees can be deeper than the recursion limit
        node = todo.pop()
        order.append(node)
        todo.extend(node.children)
    for node in reversed(order):
        node.total_bytes = node.self_bytes + sum(child.total_bytes for child in node.children)
        node.children = [c for c in node.children if c.total_bytes > 0]
        node.children.sort(key=lambda c: -c.total_bytes)


def iter_tree(root: StackTree) -> Iterator[tuple[int, StackTree]]:
    """Depth-first (depth, node) pairs, heaviest child first."""
    todo = [(0, root)]
    while todo:
        depth, node = todo.pop()
        yield depth, node
        todo.extend((depth + 1, child) for child in reversed(node.children))


def _check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: use one of {', '.join(VIEWS)}")


def decimate(points: Iterable[tuple[float, int, int]], limit: int) -> list[tuple[float, int, int]]:
    """At most ``limit`` timeline points, keeping each bucket's highest heap point."""
    points = list(points)
    if len(points) <= limit:
        return points
    size = len(points) / limit
    out = []
    for bucket in range(limit):
        chunk = points[int(bucket * size) : int((bucket + 1) * size)]
        if chunk:
            out.append(max(chunk, key=lambda p: (p[1], p[2])))
    return out
