"""Run a script with no-op C callbacks for every LINE, PY_START and PY_RETURN event of
its own code.

Usage: python noop_calls.py script.py [args...]   (3.12+: ``sys.monitoring``)

The dispatch floor of a line profiler that also follows calls and returns
(``docs/benchmarks.md``, issue 17). LINE and PY_START get ``operator.is_`` (two
arguments, does nothing); PY_RETURN gets ``slice`` (a C callable of three
arguments; it makes a slice, so the floor is slightly overstated). One tool finds
the script's code objects, another holds the measured events.
"""

import operator
import os
import runpy
import sys

script = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
mon = sys.monitoring
EVENTS = mon.events
FIND, MEASURE = 4, 5
mon.use_tool_id(FIND, "noop-find")
mon.use_tool_id(MEASURE, "noop")


def on_start(code, offset):  # type: ignore[no-untyped-def]
    if code.co_filename == script:
        mon.set_local_events(MEASURE, code, EVENTS.LINE | EVENTS.PY_START | EVENTS.PY_RETURN)
    return mon.DISABLE


mon.register_callback(MEASURE, EVENTS.LINE, operator.is_)
mon.register_callback(MEASURE, EVENTS.PY_START, operator.is_)
mon.register_callback(MEASURE, EVENTS.PY_RETURN, slice)
mon.register_callback(FIND, EVENTS.PY_START, on_start)
mon.set_events(FIND, EVENTS.PY_START)
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name="__main__")
