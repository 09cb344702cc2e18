"""Instructions per loop round of the line profiler, counted by valgrind (issue 17).

Wall-clock ratios move by ±0.1x between sittings on a shared machine; an
instruction count does not. This runs two small programs under callgrind at
two sizes and prints, per round of their loop (the difference of the two runs
divided by the difference of the sizes, so startup cancels out):

- total instructions, plain Python, the dispatch floor (3.12+:
  ``launchers/noop_branches.py --hooks``, memtrim's allocator hooks and no-op
  callbacks for its events; 3.11: ``launchers/noop_trace.py --hooks``, the hooks
  and a C trace and profile function that do nothing) and memtrim (``-f '*'``);
- for memtrim, the instructions spent in its line tracer (``tracer.c``) and, with
  ``--top N``, its N costliest functions.

    python benchmarks/bench_lines_ir.py --python /tmp/v313/bin/python [--before SRC] [--top 20]
        [--dispatch] [--probes]

``--before SRC`` counts another memtrim build too (its ``src`` directory, put on
PYTHONPATH). The programs: ``calls`` (a loop calling a one-line function that
allocates an int), ``gens`` (a value through three levels of ``yield from``).
``--probes`` adds the floor of a design with probes in the code instead of
events (``launchers/probe_floor.py --hooks``: a no-op C call at each basic
block, entry and return of the program's functions, with memtrim's hooks).

``--dispatch`` also prints what reporting one line run costs: a no-op LINE
callback (3.12+) or C trace function (3.11), against a call of a C function
written before each line (what a profiler that put probes in the bytecode
would pay).

Needs valgrind (``callgrind_annotate`` too); about a minute per program and mode.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench_lines import monitoring

HERE = os.path.dirname(os.path.abspath(__file__))
NOOP = os.path.join(HERE, "launchers", "noop_branches.py")
NOOP_TRACE = os.path.join(HERE, "launchers", "noop_trace.py")
NOOP_LINE = os.path.join(HERE, "launchers", "noop_line.py")
PROBES = os.path.join(HERE, "launchers", "probe_floor.py")

PROGRAMS = {
    "calls": """
def f(a):
    return a + 1
def g(n):
    x = 1000
    for i in range(n):
        x = f(x)
    return x
g(N)
""",
    "gens": """
def leaf(n):
    for i in range(n):
        yield i
def mid(n):
    yield from leaf(n)
def top(n):
    yield from mid(n)
def run(n):
    s = 0
    for v in top(n):
        s += 1
    return s
run(N)
""",
}
SIZES = (50_000, 100_000)

# --dispatch: what one line costs to report, by the means a line profiler has.
# Five lines run per round; the probed version calls a C function of one
# argument before each (what a profiler that rewrote the bytecode would add).
DISPATCH = """
def f(a):
    b = a + 1
    c = b * 2
    return c - a
def g(n):
    x = 0
    for i in range(n):
        x = f(i) & 1023
    return x
g(N)
"""
PROBED = """
from operator import not_ as _p
def f(a):
    _p(2)
    b = a + 1
    _p(3)
    c = b * 2
    _p(4)
    return c - a
def g(n):
    x = 0
    for i in range(n):
        _p(7)
        _p(8)
        x = f(i) & 1023
    return x
g(N)
"""


def functions(out_file: str) -> dict[str, int]:
    """Instructions per function (file:function) of one callgrind output."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", out_file],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+)", line)
        if m and ":" in m.group(2):
            name = m.group(2)
            found[name] = found.get(name, 0) + int(m.group(1).replace(",", ""))
    return found


def count(cmd: list[str], env: dict[str, str], tmp: str) -> dict[str, int]:
    out = os.path.join(tmp, "cg.out")
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return functions(out)


def per_round(cmd: list[str], program: str, env: dict[str, str], tmp: str) -> dict[str, float]:
    runs = []
    source = PROGRAMS.get(program) or {"dispatch": DISPATCH, "probed": PROBED}[program]
    for n in SIZES:
        script = os.path.join(tmp, f"{program}.py")
        with open(script, "w") as f:
            f.write(source.replace("N)", f"{n})"))
        runs.append(count([*cmd, script], env, tmp))
    small, big = runs
    rounds = SIZES[1] - SIZES[0]
    return {k: (big.get(k, 0) - small.get(k, 0)) / rounds for k in set(small) | set(big)}


def tracer_part(fns: dict[str, float]) -> float:
    return sum(v for k, v in fns.items() if "_native/tracer." in k or "_native/frames.h" in k)


def dispatch(py: str, monitoring: bool, tmp: str) -> None:
    """Per line: a no-op LINE callback (3.12+) or C trace function (3.11), and a C call."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    launcher = NOOP_LINE if monitoring else NOOP_TRACE
    event = "no-op LINE callback" if monitoring else "no-op C trace and profile function"
    plain = sum(per_round([py], "dispatch", env, tmp).values())
    hooked = sum(per_round([py, launcher], "dispatch", env, tmp).values())
    probed = sum(per_round([py], "probed", env, tmp).values())
    print(f"\nPer line run (5 per round; plain {plain:,.0f} per round):\n")
    print("| means | instructions per line |")
    print("| --- | --- |")
    print(f"| {event} | {(hooked - plain) / 5:,.0f} |")
    print(f"| a C call in the bytecode (`not_(k)`) | {(probed - plain) / 5:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--before", help="src dir of another memtrim build (PYTHONPATH)")
    ap.add_argument("--top", type=int, default=0, help="memtrim's N costliest functions")
    ap.add_argument(
        "--probes",
        action="store_true",
        help="also the floor of probes in the code (launchers/probe_floor.py --hooks)",
    )
    ap.add_argument(
        "--dispatch",
        action="store_true",
        help="also: what reporting one line costs, by an event and by a C call",
    )
    args = ap.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        raise SystemExit("bench_lines_ir.py: needs valgrind and callgrind_annotate")
    py = args.python
    memtrim = [py, "-m", "memtrim", "-o", "/dev/null", "-f", "*"]
    modes = [("plain", [py], {})]
    has_monitoring = monitoring(py)
    if has_monitoring:  # the floor's no-op callbacks are sys.monitoring's
        modes.append(("floor", [py, NOOP, "--hooks"], {}))
    else:  # 3.11: a C trace and profile function that do nothing
        modes.append(("floor", [py, NOOP_TRACE, "--hooks"], {}))
    if args.probes:  # the floor of probes in the code instead of events
        modes.append(("probe floor", [py, PROBES, "--hooks"], {}))
    if args.before:
        modes.append(("memtrim before", memtrim, {"PYTHONPATH": args.before}))
    modes.append(("memtrim", memtrim, {}))
    print(f"{py}: instructions per loop round (callgrind, {SIZES[1]} - {SIZES[0]} rounds)\n")
    print("| program | " + " | ".join(m[0] for m in modes) + " |")
    print("| --- |" + " --- |" * len(modes))
    tops = []
    with tempfile.TemporaryDirectory() as tmp:
        for program in PROGRAMS:
            cells = []
            for name, cmd, extra in modes:
                # a fixed hash seed: dict probes (globals, on 3.11) vary with it
                env = dict(os.environ, PYTHONHASHSEED="0", **extra)
                fns = per_round(cmd, program, env, tmp)
                cell = f"{sum(fns.values()):,.0f}"
                if name.startswith("memtrim"):
                    cell += f" (tracer {tracer_part(fns):,.0f})"
                cells.append(cell)
                if name == "memtrim" and args.top:
                    tops.append((program, fns))
            print(f"| {program} | " + " | ".join(cells) + " |", flush=True)
        if args.dispatch:
            dispatch(py, has_monitoring, tmp)
    for program, fns in tops:
        print(f"\n{program}, memtrim's costliest functions per round:")
        ours = sorted(((v, k) for k, v in fns.items() if "_native/" in k), reverse=True)
        for v, k in ours[: args.top]:
            print(f"  {v:8,.0f}  {k.rsplit('/', 1)[-1]}")


if __name__ == "__main__":
    main()
