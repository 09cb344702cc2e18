"""IPython magics: ``%load_ext memtrim``, then ``%memit``, ``%%memit`` and ``%mprun``.

Same options and meanings as memory_profiler's magics, with exact numbers:

- ``%memit [-r R] [-t T] [-i I] [-o] [-q] statement`` runs the statement (R
  times) and prints its peak memory and the increment of that peak over the
  memory before it. ``%%memit [options] SETUP`` runs the SETUP line once,
  unmeasured, then measures the cell.
- ``%mprun -f func [-f func2] [-T FILE] [-r] statement`` profiles the named
  functions line by line while the statement runs and prints their tables;
  functions defined in notebook cells work too. Their instrumentation is
  removed when the statement ends.

An exception raised by the statement shows the user's traceback only: the
statement's line and the frames below it, none of memtrim's. A bad option
(an unknown function, a ``-T`` file that cannot be written) is one line.
"""

from __future__ import annotations

import builtins
import gc
import os
import threading
from typing import Any

from memtrim.engine import hooks, tracer
from memtrim.engine.runner import user_traceback
from memtrim.lines.render.text import MIB, format_table
from memtrim.lines.session import LineProfiler


class MemitResult:
    """What ``%memit -o`` returns: memory_profiler's ``MemitResult``, exact.

    As in memory_profiler, ``mem_usage`` is the peak memory of each run and
    ``baseline`` the memory before the first, in MiB. The peak is the baseline
    (the process's RSS) plus the exact rise of the heap during the run;
    ``increments_bytes`` and ``baseline_bytes`` give them in bytes.
    """

    def __init__(
        self,
        increments_bytes: list[int],
        baseline_bytes: int,
        repeat: int,
        timeout: float | None = None,
        interval: float = 0.1,
        include_children: bool = False,
    ) -> None:
        self.increments_bytes = list(increments_bytes)
        self.baseline_bytes = baseline_bytes
        self.baseline = baseline_bytes / MIB
        self.mem_usage = [(baseline_bytes + inc) / MIB for inc in self.increments_bytes]
        self.repeat = repeat
        self.timeout = timeout
        self.interval = interval
        self.include_children = include_children

    @property
    def increment_bytes(self) -> int:
        """The largest increment over the runs, in bytes."""
        return max(self.increments_bytes)

    def __str__(self) -> str:
        max_mem = max(self.mem_usage)
        return f"peak memory: {max_mem:.2f} MiB, increment: {max_mem - self.baseline:.2f} MiB"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("<MemitResult : " + str(self) + ">")


def measure(
    code: Any,
    namespace: dict[str, Any],
    repeat: int = 1,
    timeout: float | None = None,
    interval: float = 0.1,
) -> MemitResult:
    """Run compiled ``code`` ``repeat`` times; each run's peak rise of the heap.

    With ``timeout``, a run's peak is the one of its first ``timeout``
    seconds (memory_profiler stops sampling then); the run still completes.
    """
    with hooks.acquire("%memit"):
        gc.collect()  # as memory_profiler: less garbage in the figures
        baseline = tracer.rss()
        increments = [_one_run(code, namespace, timeout) for _ in range(repeat)]
    return MemitResult(increments, baseline, repeat, timeout, interval)


def _one_run(code: Any, namespace: dict[str, Any], timeout: float | None) -> int:
    watch: list[int] = []
    cut: list[int] = []
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, lambda: cut.extend(map(hooks.watch_peak, watch)))
        timer.daemon = True
        timer.start()  # before the watch: the thread's own start is not the statement's
    start = hooks.level()
    watch.append(hooks.watch_begin())
    try:
        exec(code, namespace)
    finally:
        if timer is not None:
            timer.cancel()
        peak = hooks.watch_end(watch.pop())
    return max((cut[0] if cut else peak) - start, 0)


def check_text_file(path: str) -> str | None:
    """Why ``-T path`` cannot be written (``None`` if it can), checked before running."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{path} is a directory"
    if not os.path.isdir(directory):
        return f"no such directory: {directory}"
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return "permission denied"
    return None


def _number(opts: Any, key: str, kind: type, default: Any) -> Any:
    text = getattr(opts, key, None)
    if text is None:
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"-{key} needs a number, not {text!r}") from None


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (called by ``%load_ext memtrim``)."""
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, line_cell_magic, magics_class
    from IPython.core.page import page

    @magics_class
    class MemtrimMagics(Magics):  # type: ignore[misc]
        @line_cell_magic
        def memit(self, line: str = "", cell: str | None = None) -> MemitResult | None:
            """Peak memory and increment of a statement, or of a cell after a setup line.

            Options as memory_profiler's: -r R (runs, best shown), -t T (peak of the
            first T seconds), -i I (accepted: memtrim does not sample), -o (return the
            result), -q (quiet). -c (children) is not supported.
            """
            opts, stmt = self.parse_options(line, "r:t:i:coq", posix=False, strict=False)
            if "c" in opts:
                raise UsageError(
                    "%memit: -c (child processes) is not supported: memtrim measures "
                    "this process's heap, exactly"
                )
            try:
                repeat = _number(opts, "r", int, 1)
                timeout = _number(opts, "t", float, 0.0)
                interval = _number(opts, "i", float, 0.1)
            except ValueError as exc:
                raise UsageError(f"%memit: {exc}") from None
            if repeat < 1:
                raise UsageError("%memit: -r must be at least 1")
            if interval <= 0:
                raise UsageError("%memit: -i must be a positive number of seconds")
            setup, source = (None, stmt) if cell is None else (stmt, cell)
            if not source.strip():
                raise UsageError("%memit: give a statement to measure")
            if setup and setup.strip():
                __tracebackhide__ = True  # IPython leaves this frame out
                try:
                    self._exec(setup)
                except Exception as exc:
                    raise exc.with_traceback(user_traceback(exc.__traceback__)) from None
            code = self._compile(source)
            __tracebackhide__ = True  # IPython leaves this frame out
            try:
                result = measure(
                    code, self.shell.user_ns, repeat, timeout if timeout > 0 else None, interval
                )
            except Exception as exc:
                raise exc.with_traceback(user_traceback(exc.__traceback__)) from None
            if "q" not in opts:
                print(result)
            return result if "o" in opts else None

        @line_cell_magic
        def mprun(self, line: str = "", cell: str | None = None) -> LineProfiler | None:
            """Profile functions (-f) line by line while a statement runs.

            Options as memory_profiler's: -f FUNC (repeatable), -T FILE (also write the
            tables there), -r (return the profiler). -c (children) is not supported.
            """
            escaped = line.replace('"', r"\"").replace("'", r"\'")
            opts, stmt = self.parse_options(escaped, "rf:T:c", list_all=True)
            if "c" in opts:
                raise UsageError("%mprun: -c (child processes) is not supported")
            names = opts.get("f", [])
            if not names:
                raise UsageError("%mprun: name at least one function with -f")
            text_file = opts.get("T", [""])[-1]
            problem = check_text_file(text_file) if text_file else None
            if problem:
                raise UsageError(f"%mprun: cannot write -T {text_file}: {problem}")
            profiler = LineProfiler()
            for name in names:
                try:
                    func = eval(name, self.shell.user_global_ns, self.shell.user_ns)
                except Exception as exc:
                    profiler.release()
                    raise UsageError(f"%mprun: could not find function {name!r}: {exc}") from None
                try:
                    profiler.add_function(func)
                except TypeError as exc:
                    profiler.release()
                    raise UsageError(f"%mprun: {name}: {exc}") from None
            profiler.reset()
            source = stmt if cell is None else stmt + "\n" + cell
            error: Exception | None = None
            try:
                message = self._profile_run(profiler, source)
            except Exception as exc:  # shown after the tables, which are still printed
                error, message = exc, ""
            finally:
                profiler.release()  # instrumentation off: later calls run unprofiled
            output = "".join(format_table(t) for t in profiler.tables() if t.ran).rstrip()
            page(output)
            print(message)
            for fn in profiler.functions:
                fn.report_missed()
            if text_file:
                try:
                    with open(text_file, "w", encoding="utf-8") as handle:
                        handle.write(output)
                except OSError as exc:
                    if error is None:
                        reason = exc.strerror or str(exc)
                        raise UsageError(f"%mprun: cannot write -T {text_file}: {reason}") from None
                else:
                    print(f"\n*** Profile printout saved to text file {text_file}. {message}")
            if error is not None:
                __tracebackhide__ = True  # IPython leaves this frame out
                raise error.with_traceback(user_traceback(error.__traceback__))
            return profiler if "r" in opts else None

        def _profile_run(self, profiler: LineProfiler, source: str) -> str:
            code = self._compile(source)
            had = "profile" in builtins.__dict__
            old = builtins.__dict__.get("profile")
            builtins.profile = profiler  # type: ignore[attr-defined]  # as memory_profiler
            tracer.activate()
            try:
                exec(code, self.shell.user_global_ns, self.shell.user_ns)
            except SystemExit:
                return "*** SystemExit exception caught in code being profiled."
            except KeyboardInterrupt:
                return "*** KeyboardInterrupt exception caught in code being profiled."
            finally:
                tracer.deactivate()
                if had:
                    builtins.profile = old  # type: ignore[attr-defined]
                else:
                    del builtins.profile  # type: ignore[attr-defined]
            return ""

        def _compile(self, source: str) -> Any:
            # cached under a cell's name, as IPython's own cells: its traceback
            # shows the statement's source
            transformed = self.shell.transform_cell(source)
            name = self.shell.compile.cache(
                transformed, self.shell.execution_count, raw_code=source
            )
            return self.shell.compile(transformed, name, "exec")

        def _exec(self, source: str) -> None:
            exec(self._compile(source), self.shell.user_ns)

    ipython.register_magics(MemtrimMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo: the magics stay until IPython exits."""
