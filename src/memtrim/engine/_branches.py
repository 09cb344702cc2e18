"""3.12+: can a code object take its lines from branch events? Its layout for the engine.

The engine replays the LINE events CPython would send between two events that
change a frame's flow (JUMP, BRANCH, calls, returns, yields, handled
exceptions): see "virtual lines" in ``tracer.c``. It needs, per instruction,
its place in code units, its line and two flags; this module reads them from
the bytecode and says which jumps change nothing (their events can be
switched off) and whether every jump that sends no event is such a jump.

The bytecode is read as plain ints, without :mod:`dis`'s instruction objects:
the tuples those make and drop would fill CPython's tuple free lists, and the
profiled program's next tuples of those sizes would then cost no allocation
(a line's figures changed by memtrim's own work).
"""

from __future__ import annotations

import dis
import os
import sys
from types import CodeType

# Generators and coroutines keep LINE events: each resumption would cost more
# (the frame's place found again, its lines replayed around each yield) than
# the line events it saves (bm_generators: 4.2x with branch events, 3.7x with
# LINE events).
# CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR, CO_ITERABLE_COROUTINE
_SUSPENDING = 0x20 | 0x80 | 0x200 | 0x100
RESUME, QUIET, TARGET = 2, 4, 8  # the engine's VL_RESUME, VL_QUIET, VL_TARGET
_OP = dis.opmap
# The jumps CPython reports as JUMP or BRANCH events (3.12, 3.13).
_EVENTED = frozenset(
    _OP.get(name, -1)  # (3.11 has other names: it never comes here)
    for name in (
        "JUMP_FORWARD",
        "JUMP_BACKWARD",
        "POP_JUMP_IF_FALSE",
        "POP_JUMP_IF_TRUE",
        "POP_JUMP_IF_NONE",
        "POP_JUMP_IF_NOT_NONE",
        "FOR_ITER",
    )
)
_RELATIVE = frozenset(dis.hasjrel)
_ABSOLUTE = frozenset(dis.hasjabs)
_BACKWARD = frozenset(op for op in _RELATIVE if "JUMP_BACKWARD" in dis.opname[op])
_FOR_ITER, _RESUME, _POP_TOP = _OP["FOR_ITER"], _OP["RESUME"], _OP["POP_TOP"]
_EXTENDED_ARG = dis.EXTENDED_ARG
_END_FOR_SKIPS_POP_TOP = sys.version_info >= (3, 13)


def _cache_sizes() -> list[int]:
    entries = dis._inline_cache_entries  # type: ignore[attr-defined]
    if isinstance(entries, dict):  # 3.13: by name
        return [entries.get(dis.opname[op], 0) for op in range(256)]
    return [entries[op] if op < len(entries) else 0 for op in range(256)]


_CACHES = _cache_sizes()


def enabled() -> bool:
    """Lines from branch events, unless ``MEMTRIM_LINE_EVENTS=line`` asks for LINE events."""
    return os.environ.get("MEMTRIM_LINE_EVENTS", "branch") != "line"


def layout(code: CodeType) -> tuple[list[int], list[int]] | None:
    """``(instructions, jumps back)`` as flat lists of ints, or None if the code
    must keep its LINE events.

    ``instructions``: unit, units, line, flags for each instruction in order.
    ``jumps back``: source and target units of the jumps back that send no
    event (those switched off, within one line; an ``await``'s loop; 3.13
    leaves an ``except`` block that way, across lines): when the frame turns
    up before where its lines were accounted, the engine takes the first of
    them after that point."""
    if code.co_flags & _SUSPENDING:
        return None
    raw = code.co_code
    size = len(raw) // 2
    lines = _unit_lines(code, size)
    starts: list[int] = []
    ops: list[int] = []
    jumps: list[int] = []  # per instruction: its target unit, or -1
    unit = arg = 0
    while unit < size:
        op = raw[2 * unit]
        oparg = raw[2 * unit + 1] | arg
        arg = oparg << 8 if op == _EXTENDED_ARG else 0
        length = 1 + _CACHES[op]
        starts.append(unit)
        ops.append(op)
        if op in _RELATIVE:
            jumps.append(unit + length + (-oparg if op in _BACKWARD else oparg))
        elif op in _ABSOLUTE:
            jumps.append(oparg)
        else:
            jumps.append(-1)
        unit += length
    targets = _targets(starts, ops, jumps)
    out: list[int] = []
    back: list[int] = []
    for i in range(len(starts)):  # (appends, no tuples: see the module's docstring)
        unit, op, target = starts[i], ops[i], jumps[i]
        end = starts[i + 1] if i + 1 < len(starts) else size
        flags = RESUME if op == _RESUME else 0
        if target >= 0:
            if op == _FOR_ITER:
                # an exhausted loop goes on after END_FOR (and 3.13's POP_TOP after it)
                target = _loop_exit(starts, ops, target)
            span = _one_line(lines, starts, ops, unit, target)
            evented = op in _EVENTED
            quiet = evented and span == _ONE_LINE
            if quiet:
                flags |= QUIET
            elif not evented and span == _LINES and target > unit:
                return None  # a jump forward without an event that changes lines
            if target <= unit and (quiet or not evented):
                back.append(unit)  # a jump back that sends no event
                back.append(target)
        if unit in targets:
            flags |= TARGET
        out.append(unit)
        out.append(end - unit)
        out.append(lines[unit])
        out.append(flags)
    return out, back


def _targets(starts: list[int], ops: list[int], jumps: list[int]) -> set[int]:
    """Where the jumps land (an exhausted FOR_ITER: after its END_FOR)."""
    out: set[int] = set()
    for i in range(len(jumps)):
        target = jumps[i]
        if target < 0:
            continue
        out.add(target)
        if ops[i] == _FOR_ITER:
            last = _loop_exit(starts, ops, target)
            after = _index(starts, last) + 1
            if 0 < after < len(starts):
                out.add(starts[after])
    return out


def _index(starts: list[int], unit: int) -> int:
    lo, hi = 0, len(starts)
    while lo < hi:
        mid = (lo + hi) // 2
        if starts[mid] < unit:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _loop_exit(starts: list[int], ops: list[int], target: int) -> int:
    """The last unit a FOR_ITER with END_FOR at ``target`` passes when the loop ends."""
    i = _index(starts, target)
    if i >= len(starts) or starts[i] != target:
        return target
    if _END_FOR_SKIPS_POP_TOP and i + 1 < len(ops) and ops[i + 1] == _POP_TOP:
        return starts[i + 1]
    return target


def _unit_lines(code: CodeType, size: int) -> list[int]:
    out = [-1] * (size + 1)
    for start, end, line in code.co_lines():
        if line is not None:
            for unit in range(start // 2, min(end // 2, size)):
                out[unit] = line
    return out


_LINES, _ONE_LINE_RESUME, _ONE_LINE = 0, 1, 2


def _one_line(lines: list[int], starts: list[int], ops: list[int], a: int, b: int) -> int:
    """The instructions from unit ``a`` to unit ``b`` (either way): on several
    lines, on one line with a RESUME among them (the line after one always
    fires), or on one line."""
    lo, hi = min(a, b), max(a, b)
    first = lines[a]
    if first < 0:
        return _LINES
    span = _ONE_LINE
    i = _index(starts, lo)
    while i < len(starts) and starts[i] <= hi:
        if lines[starts[i]] != first:
            return _LINES
        if ops[i] == _RESUME:
            span = _ONE_LINE_RESUME
        i += 1
    return span
