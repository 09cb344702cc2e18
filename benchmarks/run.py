"""Run memtrim's benchmarks and write docs/benchmarks.md.

    python benchmarks/run.py [--quick] [--python PY] [--out docs/benchmarks.md]

Every comparison is measured in one sitting on this machine: memtrim next to
plain Python and the peers, as ratios of wall time. Sections from other
benchmark modules (``bench_*.py`` exposing ``run(quick) -> str``) are appended.
Needs memory_profiler (and pyperformance for the workloads) in the interpreter.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "article.py"
LAUNCHERS = Path(__file__).resolve().parent / "launchers"
sys.path.insert(0, str(LAUNCHERS.parent))
from _workloads import (  # noqa: E402
    geomean,
    median_of,
    missing,
    run_capped,
    run_rounds,
    timed,
)

# memory_profiler needs hours for some workloads: each program is stopped after this
MPROF_CAP = 120.0


def article_section(python: str, quick: bool) -> str:
    repeat = 3 if quick else 5
    big = median_of(
        {
            "plain": [python, str(EXAMPLE)],
            "memtrim": [python, "-m", "memtrim", "-o", os.devnull, str(EXAMPLE)],
        },
        repeat,
    )
    small_size = "1000000"
    small = median_of(
        {
            "plain": [python, str(EXAMPLE), small_size],
            "memtrim": [python, "-m", "memtrim", "-o", os.devnull, str(EXAMPLE), small_size],
        },
        repeat,
    )
    mprof = timed([python, "-m", "memory_profiler", str(EXAMPLE), small_size])
    lines = [
        "## Line profiler: the article's example",
        "",
        "`examples/article.py`: the article's four examples (`memory_intensive` and the list,",
        "`array` and numpy `allocate` functions), all decorated with `@profile`. Median of",
        f"{repeat} interleaved runs; memory_profiler (its line mode, psutil backend) once, at the",
        "smaller size because it is so slow.",
        "",
        "| size | plain python | `python -m memtrim` | ratio | memory_profiler | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| 10**7 (the article's) | {big['plain']:.2f} s | {big['memtrim']:.2f} s "
        f"| **{big['memtrim'] / big['plain']:.2f}×** | not run | |",
        f"| 10**6 | {small['plain']:.2f} s | {small['memtrim']:.2f} s "
        f"| **{small['memtrim'] / small['plain']:.2f}×** | {mprof:.1f} s "
        f"| {mprof / small['plain']:.0f}× |",
        "",
    ]
    return "\n".join(lines)


def workloads_section(python: str, quick: bool) -> str:
    why_not = missing(python)
    if why_not:
        return f"## Line profiler: workloads\n\nNot run: {why_not}.\n"
    scale = 0.05 if quick else 0.2
    launchers = {
        "plain": [python],
        "memtrim": [python, "-m", "memtrim", "-o", os.devnull, "-f", "*"],
    }
    timed = run_rounds(launchers, python, scale, 1, ROOT)
    results = {name: {p: t for p, (t, _rss) in res.items()} for name, res in timed.items()}
    names = list(results["plain"])
    cap = 60 if quick else MPROF_CAP
    mprof = run_capped([python, str(LAUNCHERS / "mprof_all.py")], python, scale, ROOT, names, cap)
    rows = [
        "## Line profiler: workloads, every function decorated",
        "",
        "`../shared/bench/workloads.sh` (eight pyperformance programs, one process each) at",
        f"`WORKLOAD_SCALE={scale}`, with every function of each benchmark script profiled line by",
        "line: `python -m memtrim -f '*'`, and memory_profiler's `LineProfiler` given every code",
        "object (`benchmarks/launchers/mprof_all.py`). One run each, same sitting.",
        f"memory_profiler runs each program alone and is stopped after {cap:.0f} s: a stopped",
        "program shows `> cap` and its ratio is a lower bound (so is the geometric mean then).",
        "",
        "| workload | plain | memtrim | ratio | memory_profiler | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    mprof_ratios = []
    for name in names:
        p, m = results["plain"][name], results["memtrim"][name]
        mp = mprof[name]
        if mp is None:
            mprof_cells = f"> {cap:.0f} s | > {cap / p:.0f}×"
            mprof_ratios.append(cap / p)
        else:
            mprof_cells = f"{mp:.2f} s | {mp / p:.0f}×"
            mprof_ratios.append(mp / p)
        rows.append(f"| {name} | {p:.2f} s | {m:.2f} s | {m / p:.2f}× | {mprof_cells} |")
    gm = geomean([results["memtrim"][n] / results["plain"][n] for n in names])
    gmp = geomean(mprof_ratios)
    bound = ">" if None in mprof.values() else ""
    rows += [f"| **geometric mean** | | | **{gm:.2f}×** | | **{bound}{gmp:.0f}×** |", ""]
    return "\n".join(rows)


def extra_sections(quick: bool) -> list[tuple[str, Callable[[], str]]]:
    """(name, section maker) for each ``bench_*.py`` module."""
    sections = []
    for path in sorted(Path(__file__).resolve().parent.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        sections.append((path.stem, functools.partial(module.run, quick=quick)))
    return sections


def guarded(name: str, make: Callable[[], str]) -> tuple[str, bool]:
    """A section's markdown and whether it ran: one failing section keeps the others."""
    try:
        return make(), True
    except Exception:
        traceback.print_exc()
        return f"## {name}\n\nFailed in this run: see the benchmark's stderr.\n", False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller workloads")
    parser.add_argument("--python", default=sys.executable, help="interpreter to measure")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--only", choices=["article", "workloads", "extra"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["article", "workloads", "extra"])
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    header = [
        "# Benchmarks",
        "",
        f"Measured {datetime.date.today()} with `python benchmarks/run.py"
        f"{' --quick' if args.quick else ''}` on Python {version}, {platform.machine()},"
        f" {os.cpu_count()} cores (a shared, noisy machine: compare ratios within a table, they",
        "were measured in one sitting).",
        "",
        "memtrim against an earlier revision of itself (does a change slow it down?) is in",
        "[revisions.md](revisions.md), written by `python benchmarks/compare_revisions.py`.",
        "",
    ]
    makers: list[tuple[str, Callable[[], str]]] = []
    if "article" in only:
        makers.append(("article", lambda: article_section(args.python, args.quick)))
    if "workloads" in only:
        makers.append(("workloads", lambda: workloads_section(args.python, args.quick)))
    if "extra" in only:
        makers.extend(extra_sections(args.quick))
    sections, ok = [], True
    for name, make in makers:
        text, ran = guarded(name, make)
        sections.append(text)
        ok = ok and ran
        Path(args.out).write_text("\n".join(header + sections))  # kept if a later one dies
    print(Path(args.out).read_text())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
