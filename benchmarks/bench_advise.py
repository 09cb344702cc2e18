"""Benchmark the advisor: `memtrim run --advise` against `memtrim run`, `advise()` on a
big heap, and the savings it states against those measured on the fixed programs.

    python benchmarks/bench_advise.py [--quick]

1. ``../shared/bench/workloads.sh`` under plain Python, ``memtrim run`` and
   ``memtrim run --advise``, interleaved rounds: the target is ``--advise`` at most
   1.2x the time of ``memtrim run`` (geometric mean).
2. ``memtrim.advise()`` of a heap of about a million objects (lists of floats and
   ints, instances, dicts, strings): the target is under 2 s.
3. The planted programs of ``tests/data/advice`` (each with a fixed twin): the saving
   the advice states next to the real one (the difference of the two programs' heap
   figures under `memtrim run`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import geomean, missing, run_rounds

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "advice"

BIG_HEAP = """
import random, time, memtrim
rng = random.Random(0)
floats = [rng.random() for _ in range(200_000)]
ints = [rng.randrange(1000) for _ in range(200_000)]
class Item:
    def __init__(self, i):
        self.a = i
        self.b = 2
items = [Item(i) for i in range(150_000)]
rows = [{"id": i, "v": i % 10} for i in range(150_000)]
names = ["-".join(["n", str(i % 500)]) for i in range(300_000)]
count = sum(row.count for row in memtrim.census().rows())
t = time.perf_counter()
found = memtrim.advise()
print(count, time.perf_counter() - t, len(found))
"""

# (program, kind, the heap figure the real saving is measured on): as the tests do
PLANTED = [
    ("array_ints", "array", "peak"),
    ("array_floats", "array", "peak"),
    ("slots", "slots", "peak"),
    ("intern", "intern", "peak"),
    ("records", "records", "peak"),
    ("generator", "generator", "peak"),
    ("mmap_read", "mmap", "peak"),
    ("dtype", "dtype", "peak"),
    ("cache", "cache", "at_exit"),
    ("leak", "leak", "at_exit"),
    ("trie", "trie", "at_exit"),
]


def launchers(python: str, out: Path) -> dict[str, list[str]]:
    run = [python, "-m", "memtrim", "run", "-q", "--force"]
    return {
        "plain python": [python],
        "memtrim run": [*run, "-o", f"{out}/r-{{name}}.memtrim"],
        "memtrim run --advise": [*run, "--advise", "-o", f"{out}/a-{{name}}.memtrim"],
    }


def _report(python: str, script: Path, out: Path, *extra: str) -> dict:
    target = out / f"{script.stem}{'-advise' if extra else ''}.json"
    cmd = [python, "-m", "memtrim", "run", "-q", "--force", "-o", str(out / "x.memtrim")]
    proc = subprocess.run(
        [*cmd, "--json", str(target), *extra, str(script)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name}: {proc.stderr[-500:]}")
    return json.loads(target.read_text())


def planted_rows(python: str, out: Path) -> list[str]:
    rows = []
    for name, kind, figure in PLANTED:
        script = DATA / f"{name}.py"
        if not script.exists():
            continue
        try:
            real = (
                _report(python, script, out)[figure]["bytes"]
                - _report(python, DATA / f"{name}_fixed.py", out)[figure]["bytes"]
            )
            advice = _report(python, script, out, "--advise").get("advice", [])
        except RuntimeError as exc:  # a library the program needs is not installed
            rows.append(f"| {name} | {kind} | not run: {str(exc)[:80]} | | |")
            continue
        stated = max((a["saving"] for a in advice if a["kind"] == kind), default=0)
        error = (stated - real) / real if real else 0.0
        rows.append(
            f"| {name} | {kind} | {stated / 2**20:.1f} MiB | {real / 2**20:.1f} MiB "
            f"| {error:+.1%} |"
        )
    return rows


def big_heap(python: str) -> str:
    proc = subprocess.run([python, "-c", BIG_HEAP], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"not run: {proc.stderr[-300:]}"
    count, seconds, found = proc.stdout.split()
    return (
        f"`memtrim.advise()` of the whole heap: {float(seconds):.2f} s "
        f"({int(count):,} live objects, as `memtrim.census()` counts them; {found} advice)."
    )


def run(quick: bool = False, python: str = sys.executable) -> str:
    """The markdown section for docs/benchmarks.md."""
    why_not = missing(python)
    lines = ["## The advisor", ""]
    out = Path(tempfile.mkdtemp(prefix="memtrim-advise-"))
    try:
        if why_not:
            lines.append(f"Workloads not run: {why_not}.")
        else:
            scale, rounds = (0.3, 1) if quick else (1.0, 3)
            results = run_rounds(launchers(python, out), python, scale, rounds, out)
            lines += _workloads(results, scale, rounds)
        lines += ["", big_heap(python), ""]
        if not quick:
            lines += [
                "Planted waste (`tests/data/advice`): the saving the advice states, and the",
                "real one: the heap figure of the program less that of its fixed twin.",
                "",
                "| program | kind | stated | real | error |",
                "| --- | --- | --- | --- | --- |",
                *planted_rows(python, out),
            ]
        return "\n".join(lines) + "\n"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _workloads(results: dict, scale: float, rounds: int) -> list[str]:
    plain, base, advise = (
        results["plain python"],
        results["memtrim run"],
        results["memtrim run --advise"],
    )
    programs = list(plain)
    vs_run = [advise[p][0] / base[p][0] for p in programs]
    vs_plain = [advise[p][0] / plain[p][0] for p in programs]
    run_plain = [base[p][0] / plain[p][0] for p in programs]
    return [
        f"`../shared/bench/workloads.sh` at `WORKLOAD_SCALE={scale}`, {rounds} interleaved "
        "round(s), median per program.",
        "",
        "| ratio | " + " | ".join(programs) + " | **geomean** |",
        "| --- | " + " | ".join("---" for _ in programs) + " | --- |",
        "| `run --advise` / `run` | "
        + " | ".join(f"{r:.2f}×" for r in vs_run)
        + f" | **{geomean(vs_run):.2f}×** |",
        "| `run` / plain | "
        + " | ".join(f"{r:.2f}×" for r in run_plain)
        + f" | **{geomean(run_plain):.2f}×** |",
        "| `run --advise` / plain | "
        + " | ".join(f"{r:.2f}×" for r in vs_plain)
        + f" | **{geomean(vs_plain):.2f}×** |",
    ]


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
