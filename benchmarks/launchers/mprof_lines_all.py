"""Run a script under memory_profiler's line profiler with every function of it traced.

Usage: python mprof_lines_all.py script.py [args...]

memory_profiler's line mode profiles only what is decorated with ``@profile``
in the source; this launcher adds every function defined in the script (every
code object below its module code) to a ``LineProfiler``, as ``-f '*'`` does
for memtrim and ``kernprof -l -p script`` for line_profiler, then runs the
script as ``__main__`` and prints the table to /dev/null (issue 17's
side-by-side, ``benchmarks/bench_lines.py --mprof``).
"""

import os
import sys
import types

from memory_profiler import LineProfiler, show_results

script = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(script)
with open(script, "rb") as file:
    module_code = compile(file.read(), script, "exec")


def functions(code):
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield const
            yield from functions(const)


profiler = LineProfiler()
for code in functions(module_code):
    profiler.code_map.add(code)
namespace = {"__name__": "__main__", "__file__": script, "__builtins__": __builtins__}
profiler.enable_by_count()
try:
    exec(module_code, namespace)
finally:
    profiler.disable_by_count()
    with open(os.devnull, "w") as out:
        show_results(profiler, stream=out)
