"""Run a script under memory_profiler's line profiler with every function profiled.

Usage: python mprof_all.py script.py [args...]   (the peer's equivalent of
``python -m memtrim -f '*' script.py``).
"""

import sys
import types

from memory_profiler import LineProfiler


def all_functions(code: types.CodeType):
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if not const.co_name.startswith("<"):
                yield const
            yield from all_functions(const)


def main() -> None:
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    with open(path, "rb") as handle:
        code = compile(handle.read(), path, "exec")
    prof = LineProfiler()
    for function in all_functions(code):
        prof.code_map.add(function)
    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    prof.enable_by_count()
    try:
        exec(code, module.__dict__)
    finally:
        prof.disable_by_count()


if __name__ == "__main__":
    main()
