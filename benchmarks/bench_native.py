"""Benchmark native tracking: `memtrim run` with and without it, memray beside, in one sitting.

    python benchmarks/bench_native.py [--quick] [--write]

- the shared workloads (``../shared/bench/workloads.sh``): plain Python,
  ``memtrim run`` (native tracking on, the default), ``memtrim run
  --python-only`` and memray (which always tracks native allocations);
- a native-heavy program (``native_heavy.py``: Pillow, lxml, numpy) under the
  same launchers;
- the line profiler on the article's example, native tracking on and off.

Medians of interleaved rounds; ratios to plain Python. ``--write`` replaces the
"Native tracking" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import geomean, median_of, missing, run_rounds  # noqa: E402

HEAVY = Path(__file__).resolve().parent / "native_heavy.py"
EXAMPLE = ROOT / "examples" / "article.py"
SECTION = "## Native tracking: `memtrim run` with and without it"


def run_launchers(python: str, out: Path) -> dict[str, list[str]]:
    memray = str(Path(python).parent / "memray")
    table = {
        "plain python": [python],
        "memtrim run": [python, "-m", "memtrim", "run", "-q", "--force", "-o", f"{out}/n.memtrim"],
        "memtrim run --python-only": [
            python, "-m", "memtrim", "run", "-q", "--python-only", "--force",
            "-o", f"{out}/p.memtrim",
        ],
        "memray": [memray, "run", "-q", "-f", "-o", f"{out}/m.bin"],
    }  # fmt: skip
    if not Path(memray).exists():
        del table["memray"]
    return table


def ratio_table(title: str, head: str, found: dict[str, float], quote: bool = False) -> list[str]:
    """A markdown table of median times and their ratio to the first row's."""
    plain = next(iter(found.values()))
    rows = [
        f"| {f'`{n}`' if quote else n} | {t:.2f} s | **{t / plain:.2f}×** |"
        for n, t in found.items()
    ]
    return [title, "", f"| {head} | time | ratio |", "| --- | --- | --- |", *rows, ""]


def workloads(python: str, rounds: int, scale: float, out: Path) -> list[str]:
    why = missing(python)
    if why:
        return [f"Shared workloads not run: {why}.", ""]
    results = run_rounds(run_launchers(python, out), python, scale, rounds, ROOT)
    names = list(results["plain python"])
    lines = [
        f"Shared workloads at `WORKLOAD_SCALE={scale}`, {rounds} interleaved rounds, median per "
        "program, ratio to plain Python:",
        "",
        "| launcher | " + " | ".join(names) + " | **geomean** |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    plain = results["plain python"]
    for launcher, res in results.items():
        ratios = [res[n][0] / plain[n][0] for n in names]
        cells = " | ".join(f"{r:.2f}×" for r in ratios)
        lines.append(f"| {launcher} | {cells} | **{geomean(ratios):.2f}×** |")
    return [*lines, ""]


def heavy(python: str, rounds: int, out: Path) -> list[str]:
    if subprocess.run([python, "-c", "import PIL, lxml, numpy"], capture_output=True).returncode:
        return ["Native-heavy program not run: `pip install pillow lxml numpy` first.", ""]
    cmds = {name: [*prefix, str(HEAVY)] for name, prefix in run_launchers(python, out).items()}
    title = (
        f"`benchmarks/native_heavy.py` (Pillow, lxml, numpy), median of {rounds} interleaved runs:"
    )
    return ratio_table(title, "launcher", median_of(cmds, rounds))


def article(python: str, rounds: int) -> list[str]:
    cmds = {
        "plain python": [python, str(EXAMPLE)],
        "python -m memtrim": [python, "-m", "memtrim", "-o", os.devnull, str(EXAMPLE)],
        "python -m memtrim --python-only": [
            python, "-m", "memtrim", "--python-only", "-o", os.devnull, str(EXAMPLE),
        ],
    }  # fmt: skip
    title = f"The line profiler on `examples/article.py`, median of {rounds} interleaved runs:"
    return ratio_table(title, "command", median_of(cmds, rounds), quote=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller workloads")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    rounds = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        body = [
            SECTION,
            "",
            f"Measured {datetime.date.today()} on this machine (2 shared cores; Python "
            f"{sys.version.split()[0]}), all launchers in one sitting.",
            "",
            *workloads(args.python, rounds, 0.5 if args.quick else 1.0, out),
            *heavy(args.python, 2 * rounds + 1, out),
            *article(args.python, 2 * rounds + 1),
        ]
    text = "\n".join(body)
    print(text)
    if args.write:
        doc = ROOT / "docs" / "benchmarks.md"
        current = doc.read_text()
        pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
        updated = (
            pattern.sub(text.rstrip() + "\n", current)
            if SECTION in current
            else (current.rstrip() + "\n\n" + text)
        )
        doc.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
