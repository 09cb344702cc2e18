"""The line tracer: which code objects are profiled, and switching events on.

On Python 3.12+ events come from :mod:`sys.monitoring`, enabled only on the
profiled code objects, so the rest of the program runs at full speed. On 3.11
a C trace function is installed per thread while a profiled call is running
(:func:`enter` / :func:`exit`), or for the whole run (:func:`trace_everywhere`)
when functions are profiled by name and have no wrapper to switch it on.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from types import CodeType

from memtrim.engine import load

_engine = load()
MONITORING = bool(_engine.HAVE_MONITORING)
_TOOL_NAME = "memtrim"
_state: dict[str, object] = {"tool": None, "everywhere": False}


_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})


def nested_code(code: CodeType) -> Iterator[CodeType]:
    """Code objects defined inside ``code`` (comprehensions, lambdas, inner defs)."""
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield const
            yield from nested_code(const)


def _single_line_comprehension(code: CodeType) -> bool:
    # Its work is charged to the line that runs it, which is its own line:
    # tracing its every iteration would only cost time.
    if code.co_name not in _COMPREHENSIONS:
        return False
    return len({line for *_, line in code.co_lines() if line is not None}) <= 1


def new_table(first_line: int) -> int:
    """A new, empty line table; returns its id."""
    return _engine.new_table(first_line)


def table_stats(table: int) -> list[tuple[int, int, int, int, int]]:
    """``(line, occurrences, increment, peak, level_at_end)`` for lines that ran."""
    return _engine.table_stats(table)


def reset_table(table: int) -> None:
    """Zero a table's statistics."""
    _engine.reset_table(table)


def register(root: CodeType, table: int) -> None:
    """Profile ``root`` and the code nested in it into ``table``."""
    _ensure_tool()
    _engine.register_code(root, table, True)
    _enable_local(root)
    for code in nested_code(root):
        if _single_line_comprehension(code):
            continue
        _engine.register_code(code, table, False)
        _enable_local(code)


def enter() -> None:
    """A wrapped profiled call starts or resumes in this thread (3.11: trace it)."""
    _engine.step_in()


def exit() -> None:
    """A wrapped profiled call returned or paused: close its call record."""
    _engine.step_out()


def trace_everywhere() -> None:
    """3.11: trace this thread and every thread started from now on."""
    if MONITORING or _state["everywhere"]:
        return
    _state["everywhere"] = True
    _engine.trace_enter()
    threading.settrace(_bootstrap_thread)


def stop_everywhere() -> None:
    """Undo :func:`trace_everywhere` (for this thread and new threads)."""
    if MONITORING or not _state["everywhere"]:
        return
    _state["everywhere"] = False
    threading.settrace(None)  # type: ignore[arg-type]
    _engine.trace_exit()


def _bootstrap_thread(frame, event, arg):  # type: ignore[no-untyped-def]
    # Called once by threading for each new thread: swap in the C tracer.
    sys.settrace(None)
    _engine.trace_enter()
    _engine.cb_start(frame.f_code)  # the thread's first frame already started
    return None


# ------------------------------------------------------------ sys.monitoring


def _events() -> tuple[int, int]:
    ev = sys.monitoring.events
    local = ev.PY_START | ev.PY_RESUME | ev.PY_RETURN | ev.PY_YIELD | ev.LINE
    return local, ev.PY_UNWIND | ev.PY_THROW


def _ensure_tool() -> None:
    if not MONITORING or _state["tool"] is not None:
        return
    mon = sys.monitoring
    for tool in (mon.PROFILER_ID, 3, 4):
        if mon.get_tool(tool) is None:
            mon.use_tool_id(tool, _TOOL_NAME)
            break
    else:
        raise RuntimeError("no free sys.monitoring tool id for memtrim")
    ev = mon.events
    for event, callback in (
        (ev.PY_START, _engine.cb_start),
        (ev.PY_RESUME, _engine.cb_start),
        (ev.PY_THROW, _engine.cb_start),
        (ev.LINE, _engine.cb_line),
        (ev.PY_RETURN, _engine.cb_end),
        (ev.PY_YIELD, _engine.cb_end),
        (ev.PY_UNWIND, _engine.cb_end),
    ):
        mon.register_callback(tool, event, callback)
    mon.set_events(tool, _events()[1])
    _state["tool"] = tool


def _enable_local(code: CodeType) -> None:
    if MONITORING:
        sys.monitoring.set_local_events(_state["tool"], code, _events()[0])  # type: ignore[arg-type]


def activate() -> None:
    """Events on for this thread until :func:`deactivate` (3.11; no-op on 3.12+)."""
    if not MONITORING:
        _engine.trace_enter()


def deactivate() -> None:
    """Undo one :func:`activate`."""
    if not MONITORING:
        _engine.trace_exit()
