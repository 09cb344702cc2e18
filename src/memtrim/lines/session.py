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
from collections.abc import Callable
from types import CodeType
from typing import Any, TextIO, TypeVar

from memtrim.engine import hooks, tracer
from memtrim.lines._wrap import wrap
from memtrim.lines.model import FunctionTable, build_table
from memtrim.lines.render.text import write_tables

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_PRECISION = 3


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


class LineProfiler:
    """Profiles a set of functions line by line (memory_profiler's ``LineProfiler``).

    Use it as a decorator or call :meth:`add_function`; :meth:`tables` gives the
    results as plain data and :meth:`print_stats` prints them.
    """

    def __init__(self, native: bool | None = None, **kwargs: Any) -> None:
        self.native = native
        self.functions: list[ProfiledFunction] = []
        self.on_call_end: Callable[[ProfiledFunction], None] | None = None
        # Held, not released yet. A profiler dropped without release() lets go
        # through its functions: each frees its table and its hooks handle
        # when it is garbage (the ``profile`` decorator's wrapper keeps its
        # function, not the profiler, alive).
        self._holding: list[ProfiledFunction] = []

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

    def __call__(self, func: F) -> F:
        """Decorate ``func`` so that its calls are profiled."""
        if isinstance(func, (staticmethod, classmethod)):
            return type(func)(self(func.__func__))  # type: ignore[return-value]
        fn = self.add_function(func)
        on_end = self.on_call_end
        return wrap(func, fn.code, None if on_end is None else lambda: on_end(fn))

    def enable_by_count(self) -> None:
        """memory_profiler compatibility: start tracing this thread."""
        tracer.enter()

    def disable_by_count(self) -> None:
        """memory_profiler compatibility: undo :meth:`enable_by_count`."""
        tracer.exit()

    def tables(self) -> list[FunctionTable]:
        """Every function's table, as plain data."""
        return [fn.snapshot() for fn in self.functions]

    def reset(self) -> None:
        """Forget every measurement so far."""
        for fn in self.functions:
            fn.reset()

    def print_stats(self, stream: TextIO | None = None, precision: int = DEFAULT_PRECISION) -> None:
        """Print every table that has measurements."""
        write_tables(self.tables(), stream or sys.stdout, check_precision(precision))


def _release_all(holding: list[ProfiledFunction]) -> None:
    while holding:
        holding.pop().release()


def show_results(
    prof: LineProfiler, stream: TextIO | None = None, precision: int = DEFAULT_PRECISION
) -> None:
    """memory_profiler's ``show_results``: print a profiler's tables."""
    prof.print_stats(stream, precision)


def profile(
    func: Any = None,
    stream: TextIO | None = None,
    precision: int = DEFAULT_PRECISION,
    backend: str | None = None,
    native: bool | None = None,
) -> Any:
    """Profile a function line by line and print its table after each call.

    Use as ``@profile`` or ``@profile(precision=4, stream=f)``. The table is
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
