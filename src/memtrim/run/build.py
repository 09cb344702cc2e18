"""Turn the engine's raw recording into a :class:`~memtrim.run.capture.Capture`.

The engine hands over its call tree as ``(parent, slot, line)`` nodes, a list
of code slots ``(filename, qualname, first line)``, and one statistics tuple
per node (live, total and at-peak bytes and counts), plus the statistics of
the blocks allocated without the GIL. Here nodes that land on the same line
under the same parent are merged, memtrim's own frames are taken out, and
branches with nothing in them are dropped.
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from memtrim.model.findings import relative_path
from memtrim.run.calibrate import NOT_SAMPLED, calibrate
from memtrim.run.capture import (
    NATIVE_THREAD,
    NOGIL_THREAD,
    VIEWS,
    Capture,
    Counts,
    Frame,
    Node,
    is_cframe,
    sites,
)

# the frame standing for the frames a stack lost when the call tree was full
GAP = "(frames left out: call tree full)"
GAP_FILE = "<memtrim>"

# engine stats tuple: (live_b, live_c, total_b, total_c, peak_b, peak_c, and the
# native parts of the three byte figures: live_n, total_n, peak_n)
RawStats = tuple[int, ...]
RawNode = tuple[int, int, int]  # (parent, slot or -1, line or thread index)


class OwnFiles(NamedTuple):
    """Which frames are memtrim's own, told by the caller (the run session).

    ``package``: memtrim's directory (with a trailing separator); frames in it
    are memtrim's bookkeeping. ``transparent``: files of memtrim's that run
    inside the program's own calls (the import loader that patches numpy):
    their frames are left out of the stacks, and what they allocate is charged
    to their caller. ``bookkeeping``: memtrim's hooks in the program's threads,
    left out with what they call, but unlike the runner, the frames that call
    them are the program's.
    """

    package: str
    transparent: tuple[str, ...] = ()
    bookkeeping: tuple[str, ...] = ()


EntryTest = Callable[[str, str], bool]  # (filename, qualname) -> the program's first frame?


class _Interner:
    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._index: dict[tuple[str, str, int, int], int] = {}

    def add(self, filename: str, function: str, lineno: int, first_line: int) -> int:
        key = (filename, function, lineno, first_line)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = len(self.frames)
            self.frames.append(Frame(filename, function, lineno, first_line))
        return index


def _counts(stats: RawStats) -> tuple[Counts, Counts, Counts]:
    # (the tenth number, a node's high-water mark, is the advisor's)
    live_b, live_c, total_b, total_c, peak_b, peak_c, live_n, total_n, peak_n = stats[:9]
    return (
        Counts(peak_b, peak_c, peak_n),
        Counts(live_b, live_c, live_n),
        Counts(total_b, total_c, total_n),
    )


def _runner_nodes(
    raw_nodes: Sequence[RawNode],
    ours: list[bool],
    entry: list[bool],
    bookkeeping: list[bool],
) -> list[bool]:
    """Nodes to drop: memtrim's runner, what called it and what it called.

    The program runs inside memtrim's runner; its stacks should start at the
    program's own first frame (an ``entry`` node called by the runner), and
    what the runner allocates (itself or through the standard library) is
    memtrim's bookkeeping, not the program's. ``bookkeeping`` nodes (hooks
    inside the program's calls) are dropped with what they call, not with
    their callers.
    """
    drop = [a or b for a, b in zip(ours, bookkeeping, strict=True)]
    for index in range(len(raw_nodes) - 1, 0, -1):  # children come after parents
        parent = raw_nodes[index][0]
        if drop[index] and not bookkeeping[index] and parent > 0 and raw_nodes[parent][1] >= 0:
            drop[parent] = True  # the runner's callers
    helper = [False] * len(raw_nodes)
    for index in range(1, len(raw_nodes)):
        parent, slot, _ = raw_nodes[index]
        if parent <= 0 or slot < 0 or ours[index] or bookkeeping[index]:
            continue
        if helper[parent] or bookkeeping[parent] or (ours[parent] and not entry[index]):
            helper[index] = drop[index] = True  # called by memtrim for itself
    return drop


def _merge(
    raw_nodes: Sequence[RawNode],
    raw_stats: Sequence[RawStats],
    frame_of: list[int],
    thread_of: list[int],
    drop: list[bool],
    transparent: list[bool],
) -> list[Node]:
    """Nodes with one child per (parent, line), statistics added up.

    Plain lists of integers while merging (this runs over every node of big
    trees); :class:`Node` objects only for the nodes kept.
    """
    parents: list[int] = []
    keys: list[tuple[int, int, int]] = []
    # [peak_b, peak_c, exit_b, exit_c, alloc_b, alloc_c, peak_n, exit_n, alloc_n]
    sums: list[list[int]] = []
    new_index: list[int] = [-1] * len(raw_nodes)
    by_key: dict[tuple[int, int, int], int] = {}
    live = _with_figures(raw_nodes, raw_stats)
    for old in range(1, len(raw_nodes)):  # node 0 is the engine's "not attributed"
        if not live[old]:
            continue  # nothing in it or below it (most nodes of the sampled pass)
        parent = raw_nodes[old][0]
        new_parent = new_index[parent] if parent > 0 else -1
        if drop[old]:
            # children of a dropped frame hang from the thread's root
            while new_parent >= 0 and parents[new_parent] >= 0:
                new_parent = parents[new_parent]
            new_index[old] = new_parent
            continue
        if transparent[old] and new_parent >= 0:
            index = new_parent  # charged to the caller; children hang from it
        else:
            key = (new_parent, frame_of[old], thread_of[old])
            index = by_key.get(key, -1)
            if index < 0:
                index = by_key[key] = len(parents)
                parents.append(new_parent)
                keys.append(key)
                sums.append([0, 0, 0, 0, 0, 0, 0, 0, 0])
        stats = raw_stats[old][:9]
        live_b, live_c, total_b, total_c, peak_b, peak_c, live_n, total_n, peak_n = stats
        acc = sums[index]
        acc[0] += peak_b
        acc[1] += peak_c
        acc[2] += live_b
        acc[3] += live_c
        acc[4] += total_b
        acc[5] += total_c
        acc[6] += peak_n
        acc[7] += live_n
        acc[8] += total_n
        new_index[old] = index
    return _prune(parents, keys, sums)


def _with_figures(raw_nodes: Sequence[RawNode], raw_stats: Sequence[RawStats]) -> list[bool]:
    """Per raw node: does it, or a node below it, hold a non-zero figure?"""
    live = [any(stats[:9]) for stats in raw_stats]
    for index in range(len(raw_nodes) - 1, 0, -1):  # children come after parents
        if live[index]:
            parent = raw_nodes[index][0]
            if parent > 0:
                live[parent] = True
    return live


def _prune(
    parents: list[int], keys: list[tuple[int, int, int]], sums: list[list[int]]
) -> list[Node]:
    """Nodes of the subtrees with something in a view; parents before children."""
    keep = [any(acc) for acc in sums]
    for index in range(len(parents) - 1, -1, -1):  # children come after parents
        if keep[index] and parents[index] >= 0:
            keep[parents[index]] = True
    remap: dict[int, int] = {}
    out = []
    for index, acc in enumerate(sums):
        if keep[index]:
            remap[index] = len(out)
            _, frame, thread = keys[index]
            out.append(
                Node(
                    remap.get(parents[index], -1),
                    frame,
                    thread,
                    Counts(acc[0], acc[1], acc[6]),
                    Counts(acc[2], acc[3], acc[7]),
                    Counts(acc[4], acc[5], acc[8]),
                )
            )
    return out


def _nogil_root(nodes: list[Node], stats: RawStats, thread: int) -> None:
    """Blocks allocated without the GIL: a root of their own, if there are any."""
    if any(stats):
        peak, at_exit, allocated = _counts(stats)
        nodes.append(Node(-1, -1, thread, peak, at_exit, allocated))


def build(
    raw: dict[str, Any],
    *,
    meta: dict[str, Any],
    peak_bytes: int,
    peak_time: float,
    end_bytes: int,
    timeline: list[tuple[float, int, int]],
    thread_names: Callable[[int, int], str] | dict[int, str],
    is_entry: EntryTest | None = None,
    own: OwnFiles | None = None,
    root: str = "",
    sys_path: Sequence[str] | None = None,
    seed: int | None = None,
) -> Capture:
    """Build the capture from ``engine.calltree.snapshot()`` and what the run observed.

    ``thread_names`` is ``{ident: name}``, or a function of ``(ident, n)`` for
    the ``n``-th thread the engine saw with that ident (idents are reused).
    ``root`` is the directory the capture's paths are told relative to (the
    program's directory, or the working directory; "" when not known),
    ``sys_path`` the program's ``sys.path`` and ``seed`` the seed of the
    engine's stack sampling (``None`` when not known).
    """
    raw_nodes: list[RawNode] = raw["nodes"]
    slots: list[tuple[str, str, int]] = raw["slots"]
    raw_nodes, slots = _with_cframes(raw_nodes, slots, raw.get("cframes") or [])
    interner = _Interner()
    frame_of = [-1] * len(raw_nodes)
    thread_of = [0] * len(raw_nodes)
    ours = [False] * len(raw_nodes)
    entry = [False] * len(raw_nodes)
    transparent = [False] * len(raw_nodes)
    bookkeeping = [False] * len(raw_nodes)
    own = own or OwnFiles(package="\0")  # no file name starts with NUL
    is_ours = [
        name.startswith(own.package) and name not in own.transparent and name not in own.bookkeeping
        for name, _, _ in slots
    ]
    is_transparent = [name in own.transparent for name, _, _ in slots]
    is_bookkeeping = [name in own.bookkeeping for name, _, _ in slots]
    is_start = [bool(is_entry(name, qual)) if is_entry else True for name, qual, _ in slots]
    for index, (parent, slot, line) in enumerate(raw_nodes):
        if slot < 0:  # a thread root: `line` holds the thread's index
            thread_of[index] = max(line, 0)
            continue
        thread_of[index] = thread_of[parent] if parent >= 0 else 0
        filename, qualname, first = slots[slot]
        frame_of[index] = interner.add(filename, qualname, line, first)
        ours[index] = is_ours[slot]
        entry[index] = is_start[slot]
        transparent[index] = is_transparent[slot]
        bookkeeping[index] = is_bookkeeping[slot]
    drop = _runner_nodes(raw_nodes, ours, entry, bookkeeping)
    nodes = _merge(raw_nodes, raw["stats"], frame_of, thread_of, drop, transparent)
    if raw["sampled"] is None:
        stacks = nodes
    else:
        stacks = _merge(raw_nodes, raw["sampled"], frame_of, thread_of, drop, transparent)
        frames = interner.frames
        calibrate(
            nodes,
            stacks,
            lambda: interner.add("", NOT_SAMPLED, 0, 0),
            lambda frame: is_cframe(frames[frame]),
        )
    threads = _thread_list(raw["threads"], thread_names)
    nogil = raw.get("nogil")
    if nogil is not None and any(nogil):
        threads.append(NOGIL_THREAD)
        _nogil_root(nodes, nogil, len(threads) - 1)
        if stacks is not nodes:
            _nogil_root(stacks, nogil, len(threads) - 1)
    for name, stats, *origin in raw.get("native_threads", ()):
        if any(stats):  # a thread that never ran Python: a root of its own, by its name
            started = _started_at(origin, slots, root, sys_path)
            threads.append(f"{NATIVE_THREAD} {name}".rstrip() + started)
            _nogil_root(nodes, stats, len(threads) - 1)
            if stacks is not nodes:
                _nogil_root(stacks, stats, len(threads) - 1)
    gaps = _gap_bytes(raw)
    meta = {
        **meta,
        **({"stack_gaps": gaps} if gaps else {}),
        "exact": bool(raw["exact"]),
        "sample_bytes": int(raw["sample_bytes"]),
        "tree_full_blocks": int(raw.get("tree_full_blocks", 0)),
    }
    capture = Capture(
        meta=meta,
        peak_bytes=peak_bytes,
        peak_time=peak_time,
        end_bytes=end_bytes,
        frames=interner.frames,
        threads=threads or ["MainThread"],
        nodes=nodes,
        stacks=stacks,
        timeline=timeline,
        root=root,
        sys_path=list(sys_path or ()),
        seed=seed,
    )
    capture.sources = _sources(capture)
    return capture


def _started_at(
    origin: list[int], slots: list[tuple[str, str, int]], root: str, sys_path: Sequence[str] | None
) -> str:
    """`` (started at file:line)`` for a native thread whose starting line is known."""
    if len(origin) < 2 or not 0 <= origin[0] < len(slots):
        return ""
    filename = relative_path(slots[origin[0]][0], root or None, sys_path or ())
    return f" (started at {filename}:{origin[1]})"


def _with_cframes(
    raw_nodes: list[RawNode], slots: list[tuple[str, str, int]], cframes: list[Any]
) -> tuple[list[RawNode], list[tuple[str, str, int]]]:
    """C frames (``--native``: nodes with slot -2, their index in place of the
    line) as code slots of their own: ``function (library:0)``; gaps (slot -3:
    frames left out, the call tree was full) as one slot :data:`GAP`."""
    gaps = any(slot == -3 for _, slot, _ in raw_nodes)
    if not cframes and not gaps:
        return raw_nodes, slots
    base = len(slots)
    named = [
        (str(lib), str(symbol) or f"{os.path.basename(str(lib))}+0x{int(offset):x}", 0)
        for lib, symbol, offset in cframes
    ]
    gap = base + len(named)
    nodes = [
        (parent, base + line, 0)
        if slot == -2
        else (parent, gap, 0)
        if slot == -3
        else (parent, slot, line)
        for parent, slot, line in raw_nodes
    ]
    return nodes, [*slots, *named, *([(GAP_FILE, GAP, 0)] if gaps else [])]


def _gap_bytes(raw: dict[str, Any]) -> dict[str, list[int]] | None:
    """Per view, [bytes, blocks] charged below a gap (stacks with frames left
    out because the call tree was full); None when there is no gap."""
    raw_nodes = raw["nodes"]
    if not any(slot == -3 for _, slot, _ in raw_nodes):
        return None
    stats = raw["stats"] if raw["sampled"] is None else raw["sampled"]
    under = [False] * len(raw_nodes)
    found = {"peak": [0, 0], "at_exit": [0, 0], "allocated": [0, 0]}
    for index, (parent, slot, _) in enumerate(raw_nodes):
        under[index] = slot == -3 or (parent > 0 and under[parent])
        if under[index]:
            live_b, live_c, total_b, total_c, peak_b, peak_c = stats[index][:6]
            for view, size, count in (
                ("peak", peak_b, peak_c),
                ("at_exit", live_b, live_c),
                ("allocated", total_b, total_c),
            ):
                found[view][0] += size
                found[view][1] += count
    return found


def _thread_list(idents: list[int], names: Callable[[int, int], str] | dict[int, str]) -> list[str]:
    seen: dict[int, int] = {}
    out = []
    for ident in idents:
        n = seen[ident] = seen.get(ident, -1) + 1
        if callable(names):
            out.append(names(ident, n))
        else:
            out.append(names.get(ident, f"thread {ident}"))
    return out


def _sources(capture: Capture, per_view: int = 200) -> dict[str, dict[int, str]]:
    """Source text of the lines the reports show first."""
    wanted: set[Frame] = set()
    for view in VIEWS:
        for site in sites(capture, view, per_view):
            wanted.add(site.frame)
            wanted.update(site.stack[-8:])
    out: dict[str, dict[int, str]] = {}
    for frame in wanted:
        text = linecache.getline(frame.filename, frame.lineno).strip()
        if text:
            out.setdefault(frame.filename, {})[frame.lineno] = text
    return out
