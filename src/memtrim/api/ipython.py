"""IPython magics: ``%load_ext memtrim``, then ``%memit``, ``%%memit`` and ``%mprun``.

Same meanings as memory_profiler's magics, with exact numbers:

- ``%memit [-r N] [-o] [-q] statement`` runs the statement and prints its
  peak memory and the increment of that peak over the memory before it.
- ``%%memit`` does the same for a whole cell.
- ``%mprun -f func [-f func2] [-T FILE] [-r] statement`` profiles the named
  functions line by line while the statement runs and prints their tables;
  functions defined in notebook cells work too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from memtrim.api.profile import LineProfiler
from memtrim.engine import heap, tracer
from memtrim.reporters.text import MIB, format_table


@dataclass(frozen=True)
class MemitResult:
    """What ``%memit -o`` returns. Bytes; ``peak_memory`` is process memory (MiB in print)."""

    peak_memory: int
    increment: int
    baseline: int
    repeat: int

    def __str__(self) -> str:
        return (
            f"peak memory: {self.peak_memory / MIB:.2f} MiB, "
            f"increment: {self.increment / MIB:.2f} MiB"
        )


def measure(code: Any, namespace: dict[str, Any], repeat: int = 1) -> MemitResult:
    """Run compiled ``code`` ``repeat`` times; the highest peak wins."""
    heap.ensure_installed()
    baseline = heap.baseline_rss() + heap.level()
    best = 0
    for _ in range(repeat):
        start = heap.level()
        watch = heap.watch_begin()
        try:
            exec(code, namespace)
        finally:
            peak = heap.watch_end(watch)
        best = max(best, peak - start)
    return MemitResult(baseline + best, best, baseline, repeat)


_OPTION = re.compile(r"\s*-(\w)(\S*)")
_VALUE = re.compile(r"\s+(\S+)")


def _parse(line: str, flags: str, options: str) -> tuple[dict[str, list[str]], str]:
    """Split leading ``-x`` options (flags take no value) from the statement.

    The statement is returned exactly as typed (quotes and spacing kept).
    """
    found: dict[str, list[str]] = {}
    pos = 0
    while match := _OPTION.match(line, pos):
        key, value = match.group(1), match.group(2)
        pos = match.end()
        if key in flags and not value:
            found.setdefault(key, []).append("")
            continue
        if key not in options:
            raise ValueError(f"unknown option -{key}{value}")
        if not value:
            following = _VALUE.match(line, pos)
            if following is None:
                raise ValueError(f"option -{key} needs a value")
            value, pos = following.group(1), following.end()
        found.setdefault(key, []).append(value)
    return found, line[pos:].strip()


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (called by ``%load_ext memtrim``)."""
    from IPython.core.error import UsageError
    from IPython.core.magic import Magics, line_cell_magic, magics_class

    @magics_class
    class MemtrimMagics(Magics):  # type: ignore[misc]
        @line_cell_magic
        def memit(self, line: str = "", cell: str | None = None) -> MemitResult | None:
            """Peak memory and increment of a statement or cell (exact)."""
            try:
                opts, stmt = _parse(line, "oqic", "rt")
                repeat = int(opts.get("r", ["1"])[-1])
            except ValueError as exc:
                raise UsageError(f"%memit: {exc}") from None
            if "c" in opts:
                raise UsageError("%memit: -c is not supported: memtrim measures in-process")
            if repeat < 1:
                raise UsageError("%memit: -r must be at least 1")
            source = cell if cell is not None else stmt
            if not source.strip():
                raise UsageError("%memit: give a statement to measure")
            code = self.shell.compile(self.shell.transform_cell(source), "<memit>", "exec")
            result = measure(code, self.shell.user_ns, repeat)
            if "q" not in opts:
                print(result)
            return result if "o" in opts else None

        @line_cell_magic
        def mprun(self, line: str = "", cell: str | None = None) -> LineProfiler | None:
            """Profile functions (-f) line by line while a statement runs."""
            try:
                opts, stmt = _parse(line, "r", "fT")
            except ValueError as exc:
                raise UsageError(f"%mprun: {exc}") from None
            names = opts.get("f", [])
            if not names:
                raise UsageError("%mprun: name at least one function with -f")
            profiler = LineProfiler()
            for name in names:
                try:
                    func = eval(name, self.shell.user_ns)
                except Exception as exc:
                    raise UsageError(f"%mprun: could not find function {name!r}: {exc}") from None
                try:
                    profiler.add_function(func)
                except TypeError as exc:
                    raise UsageError(f"%mprun: {name}: {exc}") from None
            profiler.reset()
            source = cell if cell is not None else stmt
            code = self.shell.compile(self.shell.transform_cell(source), "<mprun>", "exec")
            tracer.activate()
            try:
                exec(code, self.shell.user_ns)
            finally:
                tracer.deactivate()
                text = "".join(format_table(t) for t in profiler.tables() if t.ran)
                if "T" in opts:
                    with open(opts["T"][-1], "w", encoding="utf-8") as handle:
                        handle.write(text)
                    print(f"*** Profile printout saved to text file {opts['T'][-1]}.")
                else:
                    print(text, end="")
            return profiler if "r" in opts else None

    ipython.register_magics(MemtrimMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo: the magics stay until IPython exits."""
