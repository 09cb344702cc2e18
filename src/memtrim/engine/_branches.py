"""3.12+: can a code object take its lines from branch events? Its layout for the engine.

The engine replays the LINE events CPython would send between two events that
change a frame's flow (JUMP, BRANCH, calls, returns, yields, handled
exceptions): see "virtual lines" in ``tracer.c``. It needs, per instruction,
its place in code units, its line and two flags; this module reads them from
the bytecode and says which jumps change nothing (their events can be
switched off) and whether every jump that sends no event is such a jump.
"""

from __future__ import annotations

import bisect
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
# The jumps CPython reports as JUMP or BRANCH events (3.12, 3.13).
_EVENTED = frozenset(
    {
        "JUMP_FORWARD",
        "JUMP_BACKWARD",
        "POP_JUMP_IF_FALSE",
        "POP_JUMP_IF_TRUE",
        "POP_JUMP_IF_NONE",
        "POP_JUMP_IF_NOT_NONE",
        "FOR_ITER",
    }
)
_JUMPS = frozenset(
    getattr(dis, "hasjump", None) or (set(dis.hasjrel) | set(dis.hasjabs))  # type: ignore[arg-type]
)


def enabled() -> bool:
    """Lines from branch events, unless ``MEMTRIM_LINE_EVENTS=line`` asks for LINE events."""
    return os.environ.get("MEMTRIM_LINE_EVENTS", "branch") != "line"


Layout = tuple[list[tuple[int, int, int, int]], list[tuple[int, int]]]


def layout(code: CodeType) -> Layout | None:
    """``([(unit, units, line, flags)] per instruction, [(source, target)])``,
    or None if the code must keep its LINE events.

    The second list holds the jumps back that send no event (those switched
    off, within one line; an ``await``'s loop; 3.13 leaves an ``except`` block
    that way, across lines): when the frame turns up before where its lines
    were accounted, the engine takes the first of them after that point."""
    if code.co_flags & _SUSPENDING:
        return None
    lines = _unit_lines(code)
    instrs = list(dis.get_instructions(code))
    size = len(code.co_code) // 2
    starts = [ins.offset // 2 for ins in instrs]
    targets = _targets(instrs, starts)
    back: list[tuple[int, int]] = []
    out: list[tuple[int, int, int, int]] = []
    for i, ins in enumerate(instrs):
        unit = starts[i]
        end = starts[i + 1] if i + 1 < len(instrs) else size
        flags = RESUME if ins.opname == "RESUME" else 0
        if ins.opcode in _JUMPS and isinstance(ins.argval, int):
            target = ins.argval // 2
            if ins.opname == "FOR_ITER":
                # an exhausted loop goes on after END_FOR (and 3.13's POP_TOP after it)
                target = _loop_exit(instrs, starts, target)
            same, no_resume = _one_line(lines, instrs, starts, unit, target)
            quiet = ins.opname in _EVENTED and same and no_resume
            if quiet:
                flags |= QUIET
            elif ins.opname not in _EVENTED and not same and target > unit:
                return None  # a jump forward without an event that changes lines
            if target <= unit and (quiet or ins.opname not in _EVENTED):
                back.append((unit, target))  # a jump back that sends no event
        if unit in targets:
            flags |= TARGET
        out.append((unit, end - unit, lines.get(unit, -1), flags))
    return out, back


def _targets(instrs: list[dis.Instruction], starts: list[int]) -> set[int]:
    """Where the jumps land (an exhausted FOR_ITER: after its END_FOR)."""
    out: set[int] = set()
    for ins in instrs:
        if ins.opcode in _JUMPS and isinstance(ins.argval, int):
            target = ins.argval // 2
            out.add(target)
            if ins.opname == "FOR_ITER":
                exit_ = _loop_exit(instrs, starts, target)
                i = bisect.bisect_right(starts, exit_)
                if i < len(starts):
                    out.add(starts[i])
    return out


def _loop_exit(instrs: list[dis.Instruction], starts: list[int], target: int) -> int:
    """The last unit a FOR_ITER with END_FOR at ``target`` passes when the loop ends
    (3.13 skips a POP_TOP after END_FOR too)."""
    if target not in starts:
        return target
    i = starts.index(target)
    if sys.version_info >= (3, 13) and i + 1 < len(instrs) and instrs[i + 1].opname == "POP_TOP":
        return starts[i + 1]
    return target


def _unit_lines(code: CodeType) -> dict[int, int]:
    out: dict[int, int] = {}
    for start, end, line in code.co_lines():
        for unit in range(start // 2, end // 2):
            out[unit] = -1 if line is None else line
    return out


def _one_line(
    lines: dict[int, int], instrs: list[dis.Instruction], starts: list[int], a: int, b: int
) -> tuple[bool, bool]:
    """Are the instructions from unit ``a`` to unit ``b`` (either way) all on one
    line? And is there no RESUME among them (the line after one always fires)?"""
    lo, hi = min(a, b), max(a, b)
    first = lines.get(a, -1)
    if first < 0:
        return False, False
    no_resume = True
    for i in range(bisect.bisect_left(starts, lo), bisect.bisect_right(starts, hi)):
        if lines.get(starts[i], -1) != first:
            return False, False
        no_resume = no_resume and instrs[i].opname != "RESUME"
    return True, no_resume
