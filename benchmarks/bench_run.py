"""Benchmark `memtrim run` against plain Python and the peers on the shared workloads.

    python benchmarks/bench_run.py [--quick]

Runs ``../shared/bench/workloads.sh`` once per launcher in one sitting:
plain Python, ``memtrim run`` (default and ``--exact``), memray (default and
``--trace-python-allocators``), Scalene and tracemalloc (``-X tracemalloc``),
each wrapped in ``/usr/bin/time`` for the peak RSS. Reports wall-time ratios
to plain Python (geometric mean over the programs), the extra peak RSS, the
captures' sizes and the time to render memtrim's reports.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import geomean, missing, run_rounds

LAUNCHERS = Path(__file__).resolve().parent / "launchers"


def launchers(python: str, out: Path) -> dict[str, list[str]]:
    bindir = Path(python).parent
    memray = str(bindir / "memray")
    table = {
        "plain python": [python],
        "memtrim run": [
            python,
            "-m",
            "memtrim",
            "run",
            "-q",
            "--force",
            "-o",
            f"{out}/mt-{{name}}.memtrim",
        ],
        "memtrim run --exact": [
            python,
            "-m",
            "memtrim",
            "run",
            "--exact",
            "-q",
            "--force",
            "-o",
            f"{out}/mx-{{name}}.memtrim",
        ],
        "memray": [memray, "run", "-q", "-f", "-o", f"{out}/m-{{name}}.bin"],
        "memray --trace-python-allocators": [
            memray,
            "run",
            "-q",
            "-f",
            "--trace-python-allocators",
            "-o",
            f"{out}/mp-{{name}}.bin",
        ],
        "scalene": [str(LAUNCHERS / "scalene_run.sh"), f"{out}/s-{{name}}.json"],
        "tracemalloc": [python, "-X", "tracemalloc"],
    }
    if not Path(memray).exists():
        del table["memray"], table["memray --trace-python-allocators"]
    if subprocess.run([python, "-c", "import scalene"], capture_output=True).returncode:
        del table["scalene"]
    return table


def render_times(python: str, out: Path) -> list[str]:
    captures = sorted(out.glob("mt-*.memtrim"), key=lambda p: p.stat().st_size)
    if not captures:
        return []
    biggest = captures[-1]
    rows = []
    for flag in ("--json", "--html"):
        target = out / f"report{flag.replace('--', '.')}"
        start = time.perf_counter()
        proc = subprocess.run(
            [python, "-m", "memtrim", "report", str(biggest), flag, str(target)],
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode == 0:
            rows.append(
                f"| `memtrim report {flag}` of {biggest.name.split('.')[0][3:]} | {elapsed:.2f} s "
                f"| {target.stat().st_size / 1024:.0f} KiB |"
            )
    return rows


def run(quick: bool = False, python: str = sys.executable) -> str:
    """The markdown section for docs/benchmarks.md."""
    why_not = missing(python)
    if why_not:
        return f"## Whole-program profiler\n\nNot run: {why_not}.\n"
    scale, rounds = (0.3, 1) if quick else (1.0, 3)
    out = Path(tempfile.mkdtemp(prefix="memtrim-bench-"))
    try:
        results = run_rounds(launchers(python, out), python, scale, rounds, out, rss=True)
        return _markdown(results, scale, rounds, out, python)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _markdown(results, scale: float, rounds: int, out: Path, python: str) -> str:
    plain = results["plain python"]
    programs = list(plain)
    lines = [
        "## Whole-program profiler: `memtrim run` and the peers",
        "",
        f"`../shared/bench/workloads.sh` at `WORKLOAD_SCALE={scale}`, {rounds} interleaved",
        "round(s) of every launcher in one sitting, median per program; wall-time ratio to plain",
        "Python per program, geometric mean last. Peak RSS from `/usr/bin/time` (median).",
        "",
        "| launcher | " + " | ".join(programs) + " | **geomean** | extra peak RSS (median) |",
        "| --- | " + " | ".join("---" for _ in programs) + " | --- | --- |",
    ]
    for name, res in results.items():
        ratios = [res[p][0] / plain[p][0] for p in programs]
        extra = sorted(res[p][1] - plain[p][1] for p in programs)[len(programs) // 2]
        cells = " | ".join(f"{r:.2f}×" for r in ratios)
        lines.append(
            f"| {name} | {cells} | **{geomean(ratios):.2f}×** | {extra / 2**20:+.0f} MiB |"
        )
    sizes = sorted((p.stat().st_size for p in out.glob("mt-*.memtrim")), reverse=True)
    lines += ["", "| report | time | size |", "| --- | --- | --- |"]
    lines += render_times(python, out)
    if sizes:
        lines += ["", f"Largest `memtrim run` capture: {sizes[0] / 1024:.0f} KiB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
