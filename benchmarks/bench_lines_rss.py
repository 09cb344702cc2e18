"""The line profiler's own memory: extra peak RSS per traced function and per distinct line.

Generates programs of F functions of L lines each (every line a distinct
statement, each function called once), runs each plainly and under
``python -m memtrim -o /dev/null -f '*'`` (every function traced), and takes
two figures of each process: its RSS when the program's last line runs (read
from ``/proc/self/statm`` by the program: what the profiler holds while it
profiles) and its peak RSS (``ru_maxrss`` from ``wait4``: the transient
parsing of the source included). The extra memtrim adds is fitted against F
(L fixed) and against L (F fixed): the slopes are the bytes per traced
function and per distinct line.

    python benchmarks/bench_lines_rss.py --python /tmp/v313/bin/python [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

FUNCTIONS = (500, 1000, 2000, 4000)  # at LINES_FIXED lines each
LINES_FIXED = 4
LINES = (5, 20, 40, 80)  # per function, at FUNCTIONS_FIXED functions
FUNCTIONS_FIXED = 400


def program(functions: int, lines: int) -> str:
    """F functions of L distinct lines each, all called once."""
    out = []
    for f in range(functions):
        out.append(f"def f{f}(a):")
        out.extend(f"    a = a + {f * lines + k}" for k in range(lines - 1))
        out.append("    return a")
    out.append("total = 0")
    out.append(f"for name in [f'f{{i}}' for i in range({functions})]:")
    out.append("    total += globals()[name](1)")
    out.append("import os")
    out.append("page = os.sysconf('SC_PAGE_SIZE')")
    out.append("print(int(open('/proc/self/statm').read().split()[1]) * page)")
    return "\n".join(out) + "\n"


def rss(argv: list[str]) -> tuple[int, int]:
    """(RSS at the program's end, peak RSS) of one run, in bytes (it must succeed)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}): {err[-2000:]}")
    return int(out.split()[0]), usage.ru_maxrss * 1024


def extra(python: str, source: str, rounds: int) -> tuple[int, int, int]:
    """(plain RSS at the end, memtrim's extra then, memtrim's extra peak): the
    smallest of ``rounds`` each."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "prog.py")
        with open(path, "w") as file:
            file.write(source)
        plain = [rss([python, path]) for _ in range(rounds)]
        argv = [python, "-m", "memtrim", "-o", os.devnull, "-f", "*", path]
        traced = [rss(argv) for _ in range(rounds)]
    end, peak = min(p[0] for p in plain), min(p[1] for p in plain)
    return end, min(t[0] for t in traced) - end, min(t[1] for t in traced) - peak


def slope(xs: list[int], ys: list[int]) -> float:
    """Least-squares slope of ys against xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    version = subprocess.check_output(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"], text=True
    ).strip()
    print(f"Python {version}, best of {args.rounds} per cell\n")
    print("| functions × lines | plain RSS at the end | memtrim's extra then | extra peak RSS |")
    print("| --- | --- | --- | --- |")
    rows = [(f, LINES_FIXED) for f in FUNCTIONS] + [(FUNCTIONS_FIXED, n) for n in LINES]
    found = {}
    for f, n in rows:
        plain, more, more_peak = extra(args.python, program(f, n), args.rounds)
        found[(f, n)] = (more, more_peak)
        print(
            f"| {f} × {n} | {plain / 2**20:.1f} MiB | {more / 2**20:.2f} MiB "
            f"| {more_peak / 2**20:.2f} MiB |"
        )
    for k, what in enumerate(("at the end", "at the peak")):
        per_function = slope(list(FUNCTIONS), [found[(f, LINES_FIXED)][k] for f in FUNCTIONS])
        per_line = slope(
            [FUNCTIONS_FIXED * n for n in LINES], [found[(FUNCTIONS_FIXED, n)][k] for n in LINES]
        )
        print(
            f"\n{what}: {per_function:,.0f} B per traced function ({LINES_FIXED} lines each), "
            f"{per_line:,.0f} B per distinct line"
        )


if __name__ == "__main__":
    main()
