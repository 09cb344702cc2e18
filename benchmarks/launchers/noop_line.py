"""Run a script with a no-op C callback for every LINE event of its own code.

Usage: python noop_line.py script.py [args...]   (3.12+: ``sys.monitoring``)

The floor of any line profiler that sees every line through LINE events: the
cost of CPython's dispatch alone, no call or return events, no figures
(``docs/benchmarks.md``, issue 17). The callback is ``operator.is_``: a C
function of two arguments that does nothing (``{}.get`` would hash the code
object at every event).
"""

import operator
import os
import runpy
import sys

script = os.path.abspath(sys.argv[1])
sys.argv = sys.argv[1:]
mon = sys.monitoring
TOOL = 4
mon.use_tool_id(TOOL, "noop")
EVENTS = mon.events


def on_start(code, offset):  # type: ignore[no-untyped-def]
    if code.co_filename == script:
        mon.set_local_events(TOOL, code, EVENTS.LINE)
    return mon.DISABLE


mon.register_callback(TOOL, EVENTS.LINE, operator.is_)
mon.register_callback(TOOL, EVENTS.PY_START, on_start)
mon.set_events(TOOL, EVENTS.PY_START)
sys.path[0] = os.path.dirname(script)
runpy.run_path(script, run_name="__main__")
