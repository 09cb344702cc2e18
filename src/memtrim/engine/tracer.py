"""The line tracer: which code objects are profiled, and switching events on.

On Python 3.12+ events come from :mod:`sys.monitoring`, enabled only on the
profiled code objects, so the rest of the program runs at full speed. On 3.11
a C trace function is installed per thread while a profiled call is running
(:func:`enter` / :func:`exit`), or for the whole run (:func:`trace_everywhere`)
when functions are profiled by name and have no wrapper to switch it on. It
never displaces the program's own tracer or profiler: while one is installed,
profiled code is not measured (:func:`missed`, :func:`missed_any`).

Each profiled function has a table. The code nested in it (lambdas, inner
functions) is counted in the same table, unless it is profiled explicitly
itself: then it has its own. Comprehensions and generator expressions are not
traced on their own: they count, as a whole, on the line where they start (on
every version: 3.12 inlines list, set and dict comprehensions into the
function, so their lines are folded into that first line).
"""

from __future__ import annotations

import ast
import inspect
import linecache
import sys
import textwrap
import threading
from collections import deque
from collections.abc import Iterator
from types import CodeType

from memtrim.engine import _branches, load, procfs

_engine = load()
MONITORING = bool(_engine.HAVE_MONITORING)
Wrapper = _engine.Wrapper
_TOOL_NAME = "memtrim"
# sys.monitoring ids: 0-2 are the debugger's, coverage's and profiler's (cProfile
# takes 2); memtrim uses a free one of the others.
_TOOL_IDS = (3, 4)
_state: dict[str, object] = {"tool": None, "everywhere": False, "based": False}
_COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"})
_COMPREHENSION_NODES = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef)

_roots: dict[CodeType, int] = {}  # explicitly profiled code -> its table
_tables: set[int] = set()  # tables not freed
_lock = threading.RLock()


def nested_code(code: CodeType) -> Iterator[CodeType]:
    """Code objects defined inside ``code`` (comprehensions, lambdas, inner defs)."""
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield const
            yield from nested_code(const)


def new_table(first_line: int) -> int:
    """A new, empty line table; returns its id. Its owner frees it (:func:`free_table`)."""
    with _lock:
        table = _engine.new_table(first_line)
        _tables.add(table)
        return table


def free_table(table: int) -> None:
    """The table's owner is done with it: free it (idempotent).

    Code still registered into it is unregistered first, even while running
    (its frames then stop counting). When no table is left, everything the
    tracer keeps goes too: the engine's registry of code objects, the cached
    source trees, and (3.12+) memtrim's sys.monitoring tool id.
    """
    with _lock:
        if table not in _tables:
            return
        for root in [root for root, owner in _roots.items() if owner == table]:
            _unregister_codes(root)
        _tables.discard(table)
        _engine.free_table(table)
        if not _tables:
            _folds.clear()
            _function_folds.clear()
            _release_tool()


def live_tables() -> int:
    """How many tables are not freed."""
    return len(_tables)


def table_stats(table: int) -> list[tuple[int, int, int, int, int]]:
    """``(line, occurrences, increment, peak, mem_usage)`` for lines that ran (bytes)."""
    return _engine.table_stats(table)


def reset_table(table: int) -> None:
    """Zero a table's statistics."""
    _engine.reset_table(table)


def register(root: CodeType, table: int) -> None:
    """Profile ``root`` into ``table``, with the code nested in it.

    Nested code that is profiled explicitly keeps (or gets) its own table.
    """
    with _lock:
        _ensure_tool()
        _ensure_base()
        _roots[root] = table
        _engine.register_code(root, table, True)
        _enable_local(root)
        for code in _nested_in_table(root):
            _engine.register_code(code, table, False)
            _enable_local(code)
        _engine.tr_set_line_map(table, folded_lines(root))


def unregister(root: CodeType) -> bool:
    """Stop profiling ``root`` and the code counted in its table (events off).

    Returns False, and leaves everything on, while a frame of that code is
    still being followed in some thread (a suspended generator, another thread).
    """
    with _lock:
        codes = [root, *_nested_in_table(root)]
        if any(_engine.tr_running(code) for code in codes):
            return False
        _unregister_codes(root)
        return True


def _unregister_codes(root: CodeType) -> None:
    codes = [root, *_nested_in_table(root)]
    _roots.pop(root, None)
    for code in codes:
        _engine.unregister_code(code)
        if MONITORING and _state["tool"] is not None:
            sys.monitoring.set_local_events(_state["tool"], code, 0)  # type: ignore[arg-type]


def _nested_in_table(code: CodeType) -> Iterator[CodeType]:
    # Nested code counted in the table of `code`: not explicitly profiled
    # functions (their own table) and not comprehensions (folded into a line).
    for const in code.co_consts:
        if not isinstance(const, CodeType) or const in _roots:
            continue
        if const.co_name not in _COMPREHENSIONS:
            yield const
        yield from _nested_in_table(const)


def folded_lines(code: CodeType) -> list[tuple[int, int]]:
    """``(line, first line)`` for the lines of the comprehensions in ``code`` after their first.

    Found in the source; an unknown source folds nothing.
    """
    key = (code.co_filename, code.co_name, code.co_firstlineno)
    found = _function_folds.get(key)
    if found is None:
        found = _function_folds[key] = _folds_of(code)
    return found


# (file, name, first line) -> the function's folded lines. Only the function's
# own source is parsed: every function of a big module may be profiled (-f
# '*'), and one walk of the module's tree per function was quadratic (4,000
# functions: 21 s), while the tree of a whole module costs as much memory as
# compiling it again (the peak RSS of a 30,000-line module doubled).
_function_folds: dict[tuple[str, str, int], list[tuple[int, int]]] = {}


def _folds_of(code: CodeType) -> list[tuple[int, int]]:
    filename, name, first = code.co_filename, code.co_name, code.co_firstlineno
    lines = linecache.getlines(filename)
    if not lines or not name.isidentifier():
        return []  # no source, or not a def (a module, a lambda, a comprehension)
    # the function's lines: first up to the last its bytecode covers, or (if
    # that does not parse) as the tokenizer finds its block
    for way in (_cut, _tokenized):
        top = _parsed(way(lines, code), first)
        if top is not None:
            if not isinstance(top, _FUNCTION_NODES) or top.name != name:
                return []  # a class body
            return _folds_in(top)
    whole = _folds.get(filename, False)  # the whole module, as a last resort
    if whole is False:
        whole = _folds[filename] = _file_folds(filename)
    return whole.get((name, first), []) if whole else []


def _cut(lines: list[str], code: CodeType) -> list[str] | None:
    end = _last_line(code)
    return lines[code.co_firstlineno - 1 : end] if end >= code.co_firstlineno else None


def _last_line(code: CodeType) -> int:
    """The last line any instruction of ``code`` or of the code in it spans."""
    last = 0
    for _, end, _, _ in code.co_positions():
        if end is not None and end > last:
            last = end
    for const in code.co_consts:
        if isinstance(const, CodeType):
            last = max(last, _last_line(const))
    return last


def _tokenized(lines: list[str], code: CodeType) -> list[str] | None:
    try:
        return inspect.getblock(lines[code.co_firstlineno - 1 :])
    except Exception:  # (the tokenizer's errors on a block it cannot end)
        return None


def _parsed(block: list[str] | None, first: int) -> ast.AST | None:
    """The one def or class in ``block`` (lines from ``first``), or None."""
    if not block:
        return None
    try:
        tree = ast.parse(textwrap.dedent("".join(block)))
    except (SyntaxError, ValueError):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], (*_FUNCTION_NODES, ast.ClassDef)):
        return None
    top = tree.body[0]
    ast.increment_lineno(tree, first - 1)
    start = top.decorator_list[0].lineno if top.decorator_list else top.lineno
    return top if start == first else None


def _folds_in(node: ast.AST) -> list[tuple[int, int]]:
    folded: dict[int, int] = {}
    for sub in ast.walk(node):
        if isinstance(sub, _COMPREHENSION_NODES) and sub.end_lineno:
            for line in range(sub.lineno + 1, sub.end_lineno + 1):
                # the outermost comprehension wins (ast.walk goes outside in)
                folded.setdefault(line, sub.lineno)
    return sorted(folded.items())


# per file, the last resort (a function whose own lines do not parse alone):
# (function name, first line) -> its folded lines (only functions that fold
# any); None: no source. One walk of the module's tree, not kept.
_folds: dict[str, dict[tuple[str, int], list[tuple[int, int]]] | None] = {}


def _file_folds(filename: str) -> dict[tuple[str, int], list[tuple[int, int]]] | None:
    source = "".join(linecache.getlines(filename))
    try:
        tree = ast.parse(source) if source else None
    except (SyntaxError, ValueError):
        return None
    if tree is None:
        return None
    # One breadth-first walk of the module, each node with the functions it
    # is in: within each function's subtree the order is that of a walk from
    # the function (outside in), so the outermost comprehension wins a line.
    folded: dict[int, dict[int, int]] = {}  # id(function node) -> {line: first}
    keys: dict[tuple[str, int], int] = {}  # the first function in walk order
    queue: deque[tuple[ast.AST, tuple[int, ...]]] = deque([(tree, ())])
    while queue:
        node, inside = queue.popleft()
        if isinstance(node, _FUNCTION_NODES):
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            keys.setdefault((node.name, first), id(node))
            inside = (*inside, id(node))
        elif inside and isinstance(node, _COMPREHENSION_NODES) and node.end_lineno:
            for function in inside:
                lines = folded.setdefault(function, {})
                for line in range(node.lineno + 1, node.end_lineno + 1):
                    lines.setdefault(line, node.lineno)
        for child in ast.iter_child_nodes(node):
            # a node on one line folds nothing, nor does anything in it
            end = getattr(child, "end_lineno", None)
            if end is None or end != child.lineno:  # type: ignore[attr-defined]
                queue.append((child, inside))
    return {key: sorted(folded[f].items()) for key, f in keys.items() if f in folded}


def enter() -> None:
    """A wrapped profiled call starts or resumes in this thread (3.11: trace it)."""
    _engine.step_in()


def exit() -> None:
    """A wrapped profiled call returned or paused."""
    _engine.step_out()


def trace_everywhere() -> None:
    """3.11: trace this thread and every thread started from now on."""
    if MONITORING or _state["everywhere"]:
        return
    _state["everywhere"] = True
    _engine.tr_watch_profilers()
    _engine.trace_enter()
    threading.settrace(_bootstrap_thread)


def stop_everywhere() -> None:
    """Undo :func:`trace_everywhere` (for this thread and new threads)."""
    if MONITORING or not _state["everywhere"]:
        return
    _state["everywhere"] = False
    threading.settrace(None)  # type: ignore[arg-type]
    _engine.trace_exit()


def watch_profilers() -> None:
    """3.11: follow the program's ``sys.settrace``/``sys.setprofile`` from now on.

    memtrim steps aside when the program installs its own tracer or profiler
    and comes back right after it is removed. Installed at the first profiled
    call anyway; calling it before the program runs keeps its own audit hooks
    from seeing memtrim add one later.
    """
    _engine.tr_watch_profilers()


def missed(table: int) -> int:
    """3.11: how many calls (or parts of calls) of a table were not measured.

    They ran while the program's own tracer or profiler (a debugger, coverage,
    cProfile) was installed in their thread; memtrim left it alone.
    """
    return _engine.tr_missed(table)


def missed_any() -> tuple[bool, bool]:
    """3.11: (profiled code may have run unmeasured, an audit hook refused memtrim)."""
    missed_some, refused = _engine.tr_missed_any()
    return bool(missed_some), bool(refused)


def _bootstrap_thread(frame, event, arg):  # type: ignore[no-untyped-def]
    # Called once by threading for each new thread: swap in the C tracer.
    sys.settrace(None)
    _engine.trace_enter()
    _engine.cb_start(frame.f_code)  # the thread's first frame already started
    return None


def mem_usage_now() -> int:
    """What Mem usage would say now: the RSS last read plus the exact heap change since."""
    return _engine.tr_mem_usage()


def rss() -> int:
    """The process's resident set size in bytes (0 if it cannot be read)."""
    return procfs.rss()


def _ensure_base() -> None:
    # Mem usage = RSS at the last reading + the heap's change since; the C side
    # re-reads the RSS at outermost calls. Where /proc is missing, start from
    # what the heap recorded at install time.
    if _state["based"]:
        return
    _state["based"] = True
    if _engine.rss() < 0:
        from memtrim.engine import hooks

        _engine.tr_set_base(hooks.baseline_rss())
    else:
        _engine.tr_rebase()


# ------------------------------------------------------------ sys.monitoring


def _local_events() -> int:
    ev = sys.monitoring.events
    return ev.PY_START | ev.PY_RESUME | ev.PY_RETURN | ev.PY_YIELD | ev.LINE


def _branch_events() -> int:
    ev = sys.monitoring.events
    return ev.PY_START | ev.PY_RESUME | ev.PY_RETURN | ev.PY_YIELD | ev.JUMP | ev.BRANCH


def _events() -> list[tuple[int, object]]:
    ev = sys.monitoring.events
    return [
        (ev.JUMP, _engine.tr_jump),
        (ev.BRANCH, _engine.tr_jump),
        (ev.EXCEPTION_HANDLED, _engine.tr_handled),
        (ev.PY_START, _engine.tr_start),
        (ev.PY_RESUME, _engine.tr_start),
        (ev.PY_THROW, _engine.tr_throw),
        (ev.LINE, _engine.tr_line),
        (ev.INSTRUCTION, _engine.tr_instruction),
        (ev.PY_RETURN, _engine.tr_return),
        (ev.PY_YIELD, _engine.tr_end),
        (ev.PY_UNWIND, _engine.tr_end),
    ]


def tool_id() -> int | None:
    """3.12+: memtrim's sys.monitoring tool id while a table is alive, else None."""
    return _state["tool"]  # type: ignore[return-value]


def _ensure_tool() -> None:
    if not MONITORING or _state["tool"] is not None:
        return
    mon = sys.monitoring
    for tool in _TOOL_IDS:
        if mon.get_tool(tool) is None:
            mon.use_tool_id(tool, _TOOL_NAME)
            break
    else:
        raise RuntimeError(
            f"memtrim needs a free sys.monitoring tool id ({' or '.join(map(str, _TOOL_IDS))})"
        )
    ev = mon.events
    _engine.tr_set_disable(mon.DISABLE)
    for event, callback in _events():
        mon.register_callback(tool, event, callback)
    # not local events (EXCEPTION_HANDLED: for the code with lines from branch events)
    mon.set_events(tool, ev.PY_UNWIND | ev.PY_THROW | ev.EXCEPTION_HANDLED)
    _engine.tr_set_tool(tool, ev.PY_RETURN.bit_length() - 1)
    _state["tool"] = tool


def _release_tool() -> None:
    # The last table went: give the tool id back. 3.12 and 3.13's free_tool_id
    # only drops the name, so the events and callbacks are cleared first (the
    # local events of the code profiled went off when it was unregistered).
    tool = _state["tool"]
    if not MONITORING or tool is None:
        return
    mon = sys.monitoring
    _engine.tr_set_tool(-1, -1)
    _state["tool"] = None
    if mon.get_tool(tool) != _TOOL_NAME:  # type: ignore[arg-type]
        return  # someone freed it under us: not ours any more
    mon.set_events(tool, 0)  # type: ignore[arg-type]
    for event, _ in _events():
        mon.register_callback(tool, event, None)  # type: ignore[arg-type]
    mon.free_tool_id(tool)  # type: ignore[arg-type]


def _enable_local(code: CodeType) -> None:
    if MONITORING:
        tool = _state["tool"]
        events = _local_events()
        sys.monitoring.set_local_events(tool, code, events)  # type: ignore[arg-type]
        # Lines from branch events where the bytecode allows it (CPython has
        # marked the code's line locations now): "virtual lines" in tracer.c.
        if _branches.enabled():
            layout = _branches.layout(code)
            if layout is not None and _engine.tr_use_branches(code, *layout):
                sys.monitoring.set_local_events(tool, code, _branch_events())  # type: ignore[arg-type]
                return
        # CPython recomputes the line of some LINE locations of a long code
        # object from its whole location table at every event (quadratic):
        # such code gets its line events from INSTRUCTION events instead.
        if _engine.tr_use_instructions(code, list(code.co_lines())):
            ev = sys.monitoring.events
            sys.monitoring.set_local_events(  # type: ignore[arg-type]
                tool, code, (events & ~ev.LINE) | ev.INSTRUCTION
            )


def line_source(code: CodeType) -> str | None:
    """3.12+: which events give a registered code object its lines ("line", "branch" or
    "instruction"), or None if it has no memtrim events (or on 3.11)."""
    tool = _state["tool"]
    if not MONITORING or tool is None:
        return None
    events = sys.monitoring.get_local_events(tool, code)  # type: ignore[arg-type]
    ev = sys.monitoring.events
    if events & ev.BRANCH:
        return "branch"
    if events & ev.INSTRUCTION:
        return "instruction"
    if events & ev.LINE:
        return "line"
    return None


def activate() -> None:
    """Events on for this thread until :func:`deactivate` (3.11; no-op on 3.12+)."""
    if not MONITORING:
        _engine.trace_enter()


def deactivate() -> None:
    """Undo one :func:`activate`."""
    if not MONITORING:
        _engine.trace_exit()
