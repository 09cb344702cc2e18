"""Memory over time: the sampler's cost, and memory_usage() next to memory_profiler's.

    python benchmarks/bench_timeline.py [--quick]

``run(quick) -> str`` returns the markdown section for docs/benchmarks.md.
Everything is measured in one sitting on this machine, with this interpreter;
each peak comparison runs in a fresh process so that one run's leftovers do
not lift the next one's baseline.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

MIB = 2**20

# The article's three `allocate` examples, with its size (1e7); the list one
# again with a size small enough to finish between two samples.
_LIST = "def allocate(size):\n    some_var = [n for n in range(size)]\n"
_ARRAY = "import array\n\ndef allocate(size):\n    some_var = array.array('l', range(size))\n"
_NUMPY = "import numpy as np\n\ndef allocate(size):\n    some_var = np.arange(size)\n"
EXAMPLES = {
    "list, 1e7": (_LIST, 10**7),
    "array, 1e7": (_ARRAY, 10**7),
    "numpy, 1e7": (_NUMPY, 10**7),
    "list, 1e5": (_LIST, 10**5),
}


# ------------------------------------------------------------ sampler overhead


def workload(n: int) -> int:
    """CPU and allocation heavy: small dicts and strings made and dropped."""
    total = 0
    for i in range(n):
        record = {"id": i, "name": str(i) * 3, "tags": [i, i + 1]}
        total += len(record["name"])
    return total


def _timed(func, *args) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def overhead(quick: bool) -> dict[str, float]:
    """Median wall time of the workload alone and under memory_usage(), interleaved."""
    from memtrim import memory_usage

    n = 600_000 if quick else 1_500_000
    repeat = 5 if quick else 9
    plain, sampled = [], []
    workload(n // 10)  # warm up
    for _ in range(repeat):
        plain.append(_timed(workload, n))
        sampled.append(_timed(memory_usage, (workload, (n,))))
    return {
        "plain": statistics.median(plain),
        "sampled": statistics.median(sampled),
        "repeat": repeat,
    }


def sampler_cost(children: bool, seconds: float, others: int = 0) -> dict[str, float]:
    """The native thread's CPU at the default interval, sampling an idle child
    process (and, with ``children``, finding its descendants among every
    process on the machine; ``others`` idle processes are added to that count).

    The main thread sleeps meanwhile, so the process's CPU time is the
    sampler's (and the sampler's own start and stop).
    """
    from memtrim.engine.sampler import Sampler

    idle = [sys.executable, "-c", "import time; time.sleep(3600)"]
    crowd = [subprocess.Popen(idle) for _ in range(others)]
    target = subprocess.Popen(idle)
    try:
        time.sleep(0.3)  # let them start
        sampler = Sampler(target.pid, 0.1, children=children)
        cpu, wall = time.process_time(), time.perf_counter()
        sampler.start()
        time.sleep(seconds)
        sampler.stop()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        processes = sum(name.isdigit() for name in os.listdir("/proc"))
    finally:
        for proc in [*crowd, target]:
            proc.kill()
            proc.wait()
    samples = max(1, sampler.count)
    return {"share": cpu / wall, "per_sample": cpu / samples, "processes": processes}


# ------------------------------------------------------------ peaks, side by side

_CHILD = """
import json, sys
sys.path.insert(0, {src!r})
from memtrim.engine.procfs import read_peak_rss, reset_peak_rss
calls = 0
{example}
def counted(size):
    global calls
    calls += 1
    allocate(size)
tool = {tool!r}
reset_peak_rss()
if tool == "memory_profiler":
    from memory_profiler import memory_usage
    peak = max(memory_usage((counted, ({size},))))
elif tool == "memtrim":
    from memtrim import memory_usage
    peak = max(memory_usage((counted, ({size},))))
else:
    from memtrim import memory_usage
    peak = memory_usage((counted, ({size},)), max_usage=True)
true_peak = read_peak_rss() / 2**20
print(json.dumps({{"peak": peak, "true": true_peak, "calls": calls}}))
"""


def side_by_side(example: str, tool: str) -> dict[str, float] | None:
    """One measurement in a fresh interpreter: the tool's peak, the kernel's, calls."""
    source, size = EXAMPLES[example]
    code = _CHILD.format(src=str(SRC), example=source, tool=tool, size=size)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.splitlines()[-1])


def _available(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


# ------------------------------------------------------------------- report


def _overhead_rows(quick: bool) -> list[str]:
    times = overhead(quick)
    ratio = times["sampled"] / times["plain"]
    seconds = 2.0 if quick else 6.0
    costs = [
        ("alone", sampler_cost(False, seconds)),
        ("with children", sampler_cost(True, seconds)),
        ("with children, 100 more processes", sampler_cost(True, seconds, others=100)),
    ]
    rows = [
        "Sampler overhead at the default interval (0.1 s): a CPU and allocation heavy "
        f"workload, median of {times['repeat']} interleaved runs.",
        "",
        "| run | wall time (s) | ratio |",
        "|---|---:|---:|",
        f"| plain call | {times['plain']:.3f} | 1.000 |",
        f"| `memtrim.memory_usage((f, args))` | {times['sampled']:.3f} | {ratio:.3f} |",
        "",
        "The native thread's own CPU at 0.1 s (the wall-time ratio above is within the noise "
        f"of a shared machine), over {seconds:g} s, its start and stop included; with children, "
        "the first sample reads every process's stat once, the next ones only new processes':",
        "",
        "| sampling | processes on the machine | CPU per sample (µs) | share of wall time |",
        "|---|---:|---:|---:|",
    ]
    for label, cost in costs:
        rows.append(
            f"| {label} | {cost['processes']:.0f} | {cost['per_sample'] * 1e6:.0f} | "
            f"{cost['share'] * 100:.3f} % |"
        )
    return rows


def _peak_rows() -> list[str]:
    tools = ["memtrim", "memtrim_max"]
    if _available("memory_profiler"):
        tools.insert(0, "memory_profiler")
    rows = [
        "",
        "The article's `allocate` examples: peak reported by `max(memory_usage(...))`"
        " (memtrim also with `max_usage=True`) next to the true peak RSS of the same run (the "
        "kernel's high-water mark, reset before the call), and how many times the callable ran. "
        "Each cell is a fresh process.",
        "",
        "| example | tool | peak reported (MiB) | true peak (MiB) | reported / true | calls |",
        "|---|---|---:|---:|---:|---:|",
    ]
    labels = {
        "memory_profiler": "memory_profiler `memory_usage`",
        "memtrim": "memtrim `memory_usage`",
        "memtrim_max": "memtrim `memory_usage(max_usage=True)`",
    }
    examples = [name for name in EXAMPLES if _available("numpy") or "numpy" not in name]
    for example in examples:
        for tool in tools:
            got = side_by_side(example, tool)
            if got is None:
                rows.append(f"| {example} | {labels[tool]} | failed | | | |")
                continue
            rows.append(
                f"| {example} | {labels[tool]} | {got['peak']:.1f} | {got['true']:.1f} | "
                f"{got['peak'] / got['true']:.3f} | {got['calls']} |"
            )
    if "memory_profiler" not in tools:
        rows += ["", "memory_profiler is not installed in this interpreter: not compared."]
    return rows


def run(quick: bool = False) -> str:
    """The markdown section ``## Memory over time``."""
    version = platform.python_version()
    lines = [
        "## Memory over time",
        "",
        f"Python {version} on {platform.machine()} Linux, {os.cpu_count()} CPUs (shared).",
        "",
        *_overhead_rows(quick),
        *_peak_rows(),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
