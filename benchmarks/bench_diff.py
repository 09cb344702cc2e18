"""Benchmark `memtrim diff`: two captures of each shared workload compared.

    python benchmarks/bench_diff.py [--quick]

Each workload of ``../shared/bench/workloads.sh`` is recorded twice with
``memtrim run`` (default mode), then ``memtrim diff`` of the two captures is
timed (text and ``--html``). Target: under 1 s per diff.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import missing, run_once


def run(quick: bool = False, python: str = sys.executable) -> str:
    """The markdown section for docs/benchmarks.md."""
    why_not = missing(python)
    if why_not:
        return f"## `memtrim diff`\n\nNot run: {why_not}.\n"
    scale = 0.3 if quick else 1.0
    out = Path(tempfile.mkdtemp(prefix="memtrim-diff-"))
    try:
        for side in ("a", "b"):
            prefix = [
                python,
                "-m",
                "memtrim",
                "run",
                "-q",
                "--force",
                "-o",
                f"{out}/{side}-{{name}}.memtrim",
            ]
            run_once(prefix, python, scale, out)
        rows = []
        for base in sorted(out.glob("a-*.memtrim")):
            new = base.with_name("b-" + base.name[2:])
            name = base.stem[2:]
            times = []
            for extra in ([], ["--html", str(out / f"{name}.html"), "--force"]):
                start = time.perf_counter()
                proc = subprocess.run(
                    [python, "-m", "memtrim", "diff", str(base), str(new), *extra],
                    capture_output=True,
                    text=True,
                )
                times.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise RuntimeError(f"memtrim diff failed on {name}: {proc.stderr[-300:]}")
            size = base.stat().st_size + new.stat().st_size
            rows.append(f"| {name} | {size / 1024:.0f} KiB | {times[0]:.2f} s | {times[1]:.2f} s |")
        return (
            "\n".join(
                [
                    "## `memtrim diff`",
                    "",
                    f"Each workload recorded twice (`WORKLOAD_SCALE={scale}`), then the two",
                    "captures diffed: wall time of the whole command (start-up included).",
                    "Target: under 1 s.",
                    "",
                    "| workload | both captures | `memtrim diff` | with `--html` |",
                    "| --- | --- | --- | --- |",
                    *rows,
                ]
            )
            + "\n"
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
