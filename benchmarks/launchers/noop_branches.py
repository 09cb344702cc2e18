"""Run a script with no-op C callbacks for the events memtrim's line profiler takes.

Usage: python noop_branches.py [--lines] [--hooks] [--resumes] script.py [args...]   (3.12+)

The dispatch floor of a line profiler (``docs/benchmarks.md``, issue 17), on
every code object of the script (as ``-f '*'`` does):

- default: PY_START, PY_RETURN, JUMP and BRANCH, what memtrim takes with its
  lines from branch events (its "virtual lines");
- ``--lines``: PY_START, PY_RETURN and LINE, what it takes with LINE events.

``--resumes`` adds PY_RESUME and PY_YIELD (what generators and coroutines
take). ``--hooks`` also installs memtrim's allocator hooks (exact per-block sizes, no
listener), which every figure needs. The callback of every event is the
engine's ``tr_noop``: an object of the same type as memtrim's own callbacks
(called through its vectorcall slot) that returns None. Other C callables
cost more than CPython's dispatch itself: ``slice`` makes a slice (through the
hooks), ``"".format`` parses its format (deltablue 4.8x with LINE events,
above memtrim's 4.2x).
"""

import os
import runpy
import sys

from memtrim.engine import load

args = sys.argv[1:]
lines = "--lines" in args
hooks = "--hooks" in args
resumes = "--resumes" in args
args = [a for a in args if a not in ("--lines", "--hooks", "--resumes")]
script = os.path.abspath(args[0])
sys.argv = args
mon = sys.monitoring
EVENTS = mon.events
FIND, MEASURE = 4, 5
mon.use_tool_id(FIND, "noop-find")
mon.use_tool_id(MEASURE, "noop")
MEASURED = EVENTS.PY_START | EVENTS.PY_RETURN
MEASURED |= EVENTS.LINE if lines else EVENTS.JUMP | EVENTS.BRANCH
if resumes:
    MEASURED |= EVENTS.PY_RESUME | EVENTS.PY_YIELD


def on_start(code, offset):  # type: ignore[no-untyped-def]
    if code.co_filename == script:
        mon.set_local_events(MEASURE, code, MEASURED)
    return mon.DISABLE


if hooks:
    from memtrim.engine import hooks as _hooks

    _held = _hooks.acquire("noop floor", None)
NOOP = load().tr_noop
for event in (
    EVENTS.LINE,
    EVENTS.PY_START,
    EVENTS.PY_RETURN,
    EVENTS.JUMP,
    EVENTS.BRANCH,
    EVENTS.PY_RESUME,
    EVENTS.PY_YIELD,
):
    mon.register_callback(MEASURE, event, NOOP)
mon.register_callback(FIND, EVENTS.PY_START, on_start)
mon.set_events(FIND, EVENTS.PY_START)
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name="__main__")
