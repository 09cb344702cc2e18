"""The line-by-line memory profiler: ``@profile``, :class:`LineProfiler`, tables.

Compatible with memory_profiler's ``@profile`` (bare, or with ``precision`` and
``stream``), ``LineProfiler`` and ``show_results``; the numbers come from the
engine's exact allocation accounting instead of RSS readings.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any, TextIO, TypeVar

from memtrim.engine import hooks, tracer
from memtrim.lines._wrap import wrap
from memtrim.lines.model import FunctionTable, LineRow, build_table
from memtrim.lines.render.text import write_tables
from memtrim.model.units import MIB

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PRECISION = 3  # the command line's tables and print_stats()
# memory_profiler's default for ``profile`` and ``show_results``: the same
# call gives the same format
PROFILE_PRECISION = 1


class _Owned:
    """What a :class:`ProfiledFunction` owns: its engine table and, while it is
    held, a handle on the allocator hooks. Freed by its finalizer."""

    def __init__(self, table: int) -> None:
        self.table = table
        self.hooks: hooks.Handle | None = None

    def release_hooks(self) -> None:
        if self.hooks is not None:
            self.hooks.release()
            self.hooks = None

    def close(self) -> None:
        tracer.free_table(self.table)  # unregisters its code if still registered
        self.release_hooks()


class ProfiledFunction:
    """One profiled function: its code object and engine table.

    Profiled while at least one :class:`LineProfiler` holds it; the table is
    freed when the object is garbage.
    """

    def __init__(self, code: CodeType) -> None:
        self.code = code
        self.table = tracer.new_table(code.co_firstlineno)
        self._owned = _Owned(self.table)
        # not at exit: the CLI writes its tables from an exit handler
        weakref.finalize(self, self._owned.close).atexit = False
        self.holders = 0
        self.missed_reported = False

    def hold(self, native: bool | None = None) -> None:
        """One more profiler uses this function: events on.

        ``native``: count what C libraries allocate too (see
        :func:`memtrim.engine.hooks.acquire`); the first holder's choice holds.
        """
        with _registry_lock:
            if self.holders == 0:
                if self._owned.hooks is None:  # spans the whole time the table counts
                    self._owned.hooks = hooks.acquire("line profiler", native)
                tracer.register(self.code, self.table)
            self.holders += 1

    def release(self) -> None:
        """One profiler less: events off when none is left (and no call is running)."""
        with _registry_lock:
            self.holders = max(self.holders - 1, 0)
            if self.holders == 0 and tracer.unregister(self.code):
                self._owned.release_hooks()  # else: when this object goes

    @property
    def missed(self) -> int:
        """Calls (or parts of calls) not measured: another tracer or profiler was active (3.11)."""
        return tracer.missed(self.table)

    def report_missed(self) -> None:
        """One line on stderr the first time calls of this function went unmeasured."""
        if self.missed and not self.missed_reported:
            self.missed_reported = True
            warn(missed_message([self.name]))

    @property
    def name(self) -> str:
        """The function's qualified name."""
        return self.code.co_qualname

    def snapshot(self) -> FunctionTable:
        """The table as plain data, with the source lines filled in."""
        first, source = _source_of(self.code)
        return build_table(
            self.name, self.code.co_filename, tracer.table_stats(self.table), source, first
        )

    def reset(self) -> None:
        """Forget the measurements so far."""
        tracer.reset_table(self.table)


# Weak: a function's table lives as long as a profiler (or a wrapper) uses it.
_registry: weakref.WeakValueDictionary[CodeType, ProfiledFunction] = weakref.WeakValueDictionary()
_registry_lock = threading.RLock()


def missed_message(names: list[str]) -> str:
    """What memtrim says when profiled code ran while another tracer or profiler was on."""
    which = (
        f"calls of {', '.join(names)} were not measured"
        if names
        else "profiled code that ran meanwhile was not measured"
    )
    return (
        "another tracer or profiler (sys.settrace/sys.setprofile: a debugger, coverage, "
        f"cProfile) was active, and memtrim left it alone: {which} "
        "(lines show only the runs that were measured)"
    )


def warn(message: str) -> None:
    """``memtrim: message`` on stderr (or file descriptor 2 if the program closed it)."""
    line = f"memtrim: {message}\n"
    stream = sys.stderr if sys.stderr is not None and not sys.stderr.closed else None
    try:
        if stream is not None:
            stream.write(line)
            stream.flush()
        else:
            os.write(2, line.encode("utf-8", "replace"))
    except (OSError, ValueError):
        pass  # nowhere left to say it


def profiled(code: CodeType) -> ProfiledFunction:
    """The :class:`ProfiledFunction` for ``code``, registering it on first use."""
    with _registry_lock:
        fn = _registry.get(code)
        if fn is None:
            fn = _registry[code] = ProfiledFunction(code)
        return fn


def _source_of(code: CodeType) -> tuple[int, list[str]]:
    try:
        lines, first = inspect.getsourcelines(code)
    except (OSError, TypeError):
        return code.co_firstlineno, []
    if first == 0:  # a module-level code object: the whole file
        first = 1
    return first, lines


def code_of(func: Any) -> CodeType:
    """The code object to profile for ``func`` (through ``functools.wraps`` layers)."""
    if isinstance(func, (staticmethod, classmethod)):
        func = func.__func__
    inner = inspect.unwrap(func)
    code = getattr(inner, "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(f"profile() needs a Python function, not {type(func).__name__}")
    return code


def check_precision(precision: Any) -> int:
    """Validate a precision: an integer from 0 to 12."""
    if isinstance(precision, bool) or not isinstance(precision, int):
        raise TypeError(f"precision must be an integer, not {type(precision).__name__}")
    if not 0 <= precision <= 12:
        raise ValueError(f"precision must be between 0 and 12, not {precision}")
    return precision


LineData = tuple[float, float, int]  # (increment MiB, mem usage MiB, occurrences)


class CodeMap(dict[CodeType, dict[int, LineData]]):
    """memory_profiler's ``LineProfiler.code_map``: code object -> per-line data.

    Each profiled function's code object (and the code nested in it, which
    shares its function's lines) maps to ``{lineno: (increment, mem_usage,
    occurrences)}`` for the lines that ran, in line order: the increment and
    the memory in MiB (floats, the figures of memtrim's table: exact heap
    accounting), the occurrences a count. A snapshot, taken when
    :attr:`LineProfiler.code_map` is read.

    As in memory_profiler, :meth:`items` yields ``(filename, lines)`` per
    profiled function that has measurements, ``lines`` iterating ``(lineno,
    data or None)`` over every line of its source.
    """

    def __init__(self) -> None:
        super().__init__()
        self._toplevel: list[tuple[str, tuple[LineRow, ...], dict[int, LineData]]] = []

    def add_table(self, code: CodeType, table: FunctionTable) -> None:
        """Map ``code`` (and its nested code not mapped yet) to the rows of ``table``."""
        lines = {
            row.lineno: (
                (row.increment or 0) / MIB,
                (row.mem_usage or 0) / MIB,
                row.occurrences,
            )
            for row in table.lines
            if row.ran
        }
        self._toplevel.append((table.filename, table.lines, lines))
        self[code] = lines
        stack = [code]
        while stack:
            for const in stack.pop().co_consts:
                if isinstance(const, CodeType):
                    self.setdefault(const, lines)
                    stack.append(const)

    def items(self) -> Iterator[tuple[str, Iterator[tuple[int, LineData | None]]]]:  # type: ignore[override]
        """memory_profiler's iteration: ``(filename, (lineno, data or None)...)``
        per profiled function that has measurements."""
        for filename, rows, lines in self._toplevel:
            if lines:
                yield filename, ((row.lineno, lines.get(row.lineno)) for row in rows)


class LineProfiler:
    """Profiles a set of functions line by line (memory_profiler's ``LineProfiler``).

    Use it as a decorator or call :meth:`add_function`; :meth:`tables` gives the
    results as plain data and :meth:`print_stats` prints them. As in
    memory_profiler: :meth:`enable_by_count`/:meth:`disable_by_count` or
    ``with prof:`` trace the profiled functions called in the block (3.11; on
    3.12+ they are always traced), :meth:`runctx` runs a statement so, and
    :attr:`code_map` gives the figures per code object and line.
    """

    def __init__(self, native: bool | None = None, **kwargs: Any) -> None:
        self.native = native
        self.functions: list[ProfiledFunction] = []
        self.on_call_end: Callable[[ProfiledFunction], None] | None = None
        self.precisions: dict[CodeType, int] = {}  # from prof(func, precision=N)
        # Held, not released yet. A profiler dropped without release() lets go
        # through its functions: each frees its table and its hooks handle
        # when it is garbage (the ``profile`` decorator's wrapper keeps its
        # function, not the profiler, alive).
        self._holding: list[ProfiledFunction] = []
        self._enabled = threading.local()  # enable_by_count() calls not undone, per thread

    def add_function(self, func: Any) -> ProfiledFunction:
        """Profile ``func`` from now on; returns its record."""
        return self.add_code(code_of(func))

    def add_code(self, code: CodeType) -> ProfiledFunction:
        """Profile a code object (and the code nested in it)."""
        fn = profiled(code)
        if fn not in self.functions:
            fn.hold(self.native)
            self.functions.append(fn)
            self._holding.append(fn)
        return fn

    def release(self) -> None:
        """Stop profiling this profiler's functions (unless another profiler holds them).

        The tables stay readable.
        """
        _release_all(self._holding)

    def __call__(self, func: Any = None, precision: int | None = None) -> Any:
        """Decorate ``func`` so that its calls are profiled.

        ``prof(precision=N)`` returns a decorator, as memory_profiler's does;
        ``precision`` is then the one :meth:`print_stats` uses for it by default.
        """
        if precision is not None:
            check_precision(precision)
        if func is None:
            return lambda f: self(f, precision=precision)
        if isinstance(func, (staticmethod, classmethod)):
            return type(func)(self(func.__func__, precision))
        fn = self.add_function(func)
        if precision is not None:
            self.precisions[fn.code] = precision
        on_end = self.on_call_end
        return wrap(func, fn.code, None if on_end is None else lambda: on_end(fn))

    def enable_by_count(self) -> None:
        """Trace this thread's calls of the profiled functions until as many
        :meth:`disable_by_count` calls (memory_profiler's semantics)."""
        count = getattr(self._enabled, "count", 0)
        if count == 0:
            tracer.enter()
        self._enabled.count = count + 1

    def disable_by_count(self) -> None:
        """Undo one :meth:`enable_by_count` of this thread (none left: nothing happens)."""
        count = getattr(self._enabled, "count", 0)
        if count == 0:
            return
        self._enabled.count = count - 1
        if count == 1:
            tracer.exit()

    def __enter__(self) -> LineProfiler:
        """``with prof:``: :meth:`enable_by_count` for the block."""
        self.enable_by_count()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disable_by_count()

    def runctx(self, cmd: Any, globals: dict[str, Any], locals: Any) -> LineProfiler:
        """Run the statement ``cmd`` (source or code) in the given namespaces,
        its calls of the profiled functions traced; returns the profiler."""
        self.enable_by_count()
        try:
            exec(cmd, globals, locals)
        finally:
            self.disable_by_count()
        return self

    @property
    def code_map(self) -> CodeMap:
        """The figures so far per code object and line, as memory_profiler gives
        them (see :class:`CodeMap`)."""
        result = CodeMap()
        for fn in self.functions:
            result.add_table(fn.code, fn.snapshot())
        return result

    def tables(self) -> list[FunctionTable]:
        """Every function's table, as plain data."""
        return [fn.snapshot() for fn in self.functions]

    def reset(self) -> None:
        """Forget every measurement so far."""
        for fn in self.functions:
            fn.reset()

    def print_stats(self, stream: TextIO | None = None, precision: int | None = None) -> None:
        """Print every table that has measurements (``precision``: decimals of
        the MiB figures; default: the function's own, else 3)."""
        if precision is not None:
            check_precision(precision)
        out = stream or sys.stdout
        for fn, table in zip(self.functions, self.tables(), strict=True):
            if table.ran:
                chosen = self.precisions.get(fn.code, DEFAULT_PRECISION)
                write_tables([table], out, chosen if precision is None else precision)
        out.flush()

    def show_results(
        self, stream: TextIO | None = None, precision: int = PROFILE_PRECISION
    ) -> None:
        """memory_profiler's ``show_results(prof, stream, precision)`` as a method."""
        self.print_stats(stream, check_precision(precision))


def _release_all(holding: list[ProfiledFunction]) -> None:
    while holding:
        holding.pop().release()


def show_results(
    prof: LineProfiler, stream: TextIO | None = None, precision: int = PROFILE_PRECISION
) -> None:
    """memory_profiler's ``show_results``: print a profiler's tables (1 decimal
    by default, as memory_profiler)."""
    prof.print_stats(stream, check_precision(precision))


def profile(
    func: Any = None,
    stream: TextIO | None = None,
    precision: int = PROFILE_PRECISION,
    backend: str | None = None,
    native: bool | None = None,
) -> Any:
    """Profile a function line by line and print its table after each call.

    Use as ``@profile`` or ``@profile(precision=4, stream=f)``; the MiB
    figures have 1 decimal by default, as memory_profiler's. The table is
    printed when no call of the function is running any more (so a recursive
    function prints one table per outermost call), then the counts restart.
    ``backend`` is accepted for memory_profiler compatibility and ignored: the
    numbers always come from the allocator hooks. ``native=False`` counts
    Python's allocators only, not what C libraries allocate (default: both,
    unless ``MEMTRIM_PYTHON_ONLY=1``).
    """
    check_precision(precision)
    if func is None:
        return lambda f: profile(
            f, stream=stream, precision=precision, backend=backend, native=native
        )
    prof = LineProfiler(native=native)

    def print_and_reset(fn: ProfiledFunction) -> None:
        write_tables([fn.snapshot()], stream or sys.stdout, precision)
        fn.reset()
        fn.report_missed()

    prof.on_call_end = print_and_reset
    return prof(func)
