"""The line profiler with every function traced, against plain Python (issue 17).

Runs ../shared/bench/workloads.sh (pyperformance programs, one process each)
one workload at a time, the modes interleaved round by round so that every
ratio comes from the same sitting, and prints a Markdown table (the best of the
rounds per mode, the ratio to plain, the geometric mean).

    python benchmarks/bench_lines.py --python /tmp/v313/bin/python --scale 0.3 \
        --rounds 3 [--before /tmp/mt_before/src] [--kernprof] [--article] \
        [--line-events] [--floors] [--probe-floor]

Modes: plain (`python script`), memtrim (`python -m memtrim -o /dev/null -f '*'
script`), optionally the same with another memtrim on PYTHONPATH (--before:
a build of the previous revision), kernprof (`kernprof -l -q -o /dev/null
-p script script`: line_profiler with every function of the script), and
memory_profiler (--mprof: launchers/mprof_lines_all.py, every function of the
script in its LineProfiler); 3.12+: memtrim with LINE events instead of its
lines from branch events (--line-events), and the dispatch floors of both
event sets, with memtrim's allocator hooks (--floors: launchers/noop_branches.py);
3.11: a C trace and profile function that do nothing, with the hooks (--floors:
launchers/noop_trace.py); --probe-floor: a no-op C call at each basic block of the
script's functions instead of events, with the hooks (launchers/probe_floor.py).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

WORKLOADS = [
    "json_loads",
    "json_dumps",
    "deepcopy",
    "float",
    "raytrace",
    "deltablue",
    "gc_collect",
    "generators",
]
SCRIPT = os.environ.get(
    "WORKLOADS_SH",
    os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench", "workloads.sh"
    ),
)
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def bench_dir(python: str) -> str:
    out = subprocess.check_output(
        [python, "-c", "import pyperformance,os;print(os.path.dirname(pyperformance.__file__))"],
        text=True,
    )
    return os.path.join(out.strip(), "data-files", "benchmarks")


def monitoring(python: str) -> bool:
    """Does ``python`` have sys.monitoring (3.12+)?"""
    code = "import sys; print(int(sys.version_info >= (3, 12)))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True).stdout
    return out.strip() == "1"


def run_workload(python: str, name: str, scale: float, prefix: list[str], env_extra: dict) -> float:
    env = dict(os.environ, PYTHON=python, WORKLOADS=name, WORKLOAD_SCALE=str(scale), **env_extra)
    proc = subprocess.run(
        ["bash", SCRIPT, *prefix],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    fields = proc.stdout.strip().split("\t")
    if proc.returncode != 0 or len(fields) != 3 or fields[1] != "0":
        raise SystemExit(f"{name} failed under {prefix}: {proc.stdout!r}")
    return float(fields[2])


def run_cmd(cmd: list[str], env_extra: dict) -> float:
    env = dict(os.environ, **env_extra)
    t = time.perf_counter()
    subprocess.run(
        cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before", help="src dir of another memtrim build (PYTHONPATH)")
    ap.add_argument("--kernprof", action="store_true")
    ap.add_argument("--mprof", action="store_true", help="memory_profiler, every function")
    ap.add_argument("--article", action="store_true")
    ap.add_argument(
        "--line-events",
        action="store_true",
        help="also memtrim with LINE events (MEMTRIM_LINE_EVENTS=line; 3.12+)",
    )
    ap.add_argument(
        "--floors",
        action="store_true",
        help="no-op callbacks for memtrim's events, with its hooks (launchers/noop_branches.py; "
        "3.11: launchers/noop_trace.py)",
    )
    ap.add_argument(
        "--probe-floor",
        action="store_true",
        help="a no-op C call at each basic block of the script's functions, with the hooks "
        "(launchers/probe_floor.py): the floor of a design with probes instead of events",
    )
    ap.add_argument("--workloads", default=" ".join(WORKLOADS))
    args = ap.parse_args()
    py = args.python
    names = args.workloads.split()
    bench = bench_dir(py)
    kernprof = os.path.join(os.path.dirname(py), "kernprof")

    modes: list[tuple[str, object]] = [("plain", lambda n: ([], {}))]
    memtrim = [py, "-m", "memtrim", "-o", "/dev/null", "-f", "*"]
    if args.before:
        modes.append(("memtrim before", lambda n: (memtrim, {"PYTHONPATH": args.before})))
    modes.append(("memtrim", lambda n: (memtrim, {})))
    if args.line_events:
        modes.append(("memtrim, LINE events", lambda n: (memtrim, {"MEMTRIM_LINE_EVENTS": "line"})))
    if args.floors and monitoring(py):
        noop = [py, os.path.join(HERE, "launchers", "noop_branches.py"), "--hooks"]
        modes.append(("floor: hooks + branch events", lambda n: (noop, {})))
        modes.append(("floor: hooks + LINE events", lambda n: ([*noop, "--lines"], {})))
    elif args.floors:
        noop = [py, os.path.join(HERE, "launchers", "noop_trace.py"), "--hooks"]
        modes.append(("floor: hooks + C trace function", lambda n: (noop, {})))
    if args.probe_floor:
        probes = [py, os.path.join(HERE, "launchers", "probe_floor.py"), "--hooks"]
        modes.append(("floor: hooks + probes", lambda n: (probes, {})))
    if args.kernprof and os.path.exists(kernprof):
        modes.append(
            (
                "kernprof",
                lambda n: (
                    [
                        kernprof,
                        "-l",
                        "-q",
                        "-o",
                        "/dev/null",
                        "-p",
                        os.path.join(bench, "bm_" + n, "run_benchmark.py"),
                    ],
                    {},
                ),
            )
        )
    if args.mprof:
        launcher = os.path.join(HERE, "launchers", "mprof_lines_all.py")
        modes.append(("memory_profiler", lambda n: ([py, launcher], {})))
    best: dict[tuple[str, str], float] = {}
    for _ in range(args.rounds):
        for n in names:
            for mode, make in modes:
                prefix, env = make(n)  # type: ignore[operator]
                t = run_workload(py, n, args.scale, prefix, env)
                best[(n, mode)] = min(best.get((n, mode), math.inf), t)
        if args.article:
            art = os.path.join(ROOT, "examples", "article.py")
            for mode, make in modes:
                if mode in ("kernprof", "memory_profiler") or mode.startswith("floor"):
                    continue
                prefix, env = make("")  # type: ignore[operator]
                cmd = [py, art] if not prefix else [py, "-m", "memtrim", "-o", "/dev/null", art]
                t = run_cmd(cmd, env)
                best[("article", mode)] = min(best.get(("article", mode), math.inf), t)

    cols = [m for m, _ in modes]
    print(f"{py}, scale {args.scale}, best of {args.rounds} rounds (interleaved)\n")
    print("| workload | " + " | ".join(cols) + " |")
    print("| --- " * (len(cols) + 1) + "|")
    logs = {m: [] for m in cols}
    rows = names + (["article"] if args.article else [])
    for n in rows:
        base = best[(n, "plain")]
        cells = []
        for m in cols:
            if (n, m) not in best:
                cells.append("")
                continue
            t = best[(n, m)]
            r = t / base
            if n != "article":
                logs[m].append(math.log(r))
            cells.append(f"{t:.2f} s" if m == "plain" else f"{t:.2f} s ({r:.2f}×)")
        print(f"| {n} | " + " | ".join(cells) + " |")
    print(
        "| **geometric mean** | | "
        + " | ".join(
            f"**{math.exp(sum(v) / len(v)):.2f}×**" for m, v in logs.items() if m != "plain"
        )
        + " |"
    )


if __name__ == "__main__":
    main()
