"""Run a script under a C trace and profile function that do nothing (3.11).

Usage: python noop_trace.py [--hooks] script.py [args...]

The dispatch floor of a line profiler on 3.11 (``docs/benchmarks.md``, issue
17). There, memtrim's line profiler is a C profile function (calls and
returns) and a C trace function (lines) on the thread; with either installed,
CPython runs every frame of the thread in its tracing mode (no specialized
instructions) and calls them at every call, line and return. This installs
C functions that return at once (``memtrim.engine._testing.noop_tracing``), for
every frame, as ``-f '*'`` gets for the script's. ``--hooks`` also installs
memtrim's allocator hooks (exact per-block sizes, no listener), which every
figure needs.
"""

import os
import runpy
import sys

from memtrim.engine import _testing

args = sys.argv[1:]
hooks = "--hooks" in args
args = [a for a in args if a != "--hooks"]
script = os.path.abspath(args[0])
sys.argv = args
if hooks:
    from memtrim.engine import hooks as _hooks

    _held = _hooks.acquire("noop floor", None)
sys.path[0] = os.path.dirname(script)
_testing.noop_tracing(True)
runpy.run_path(script, run_name="__main__")
