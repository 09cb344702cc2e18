"""Does a change slow memtrim down? Two revisions side by side on the shared workloads.

    python benchmarks/compare_revisions.py --base PY_WITH_OLD_MEMTRIM [--python PY]
        [--rounds 3] [--scale 1] [--label-base REV] [--out docs/revisions.md]

``--base`` is an interpreter with the earlier memtrim installed, ``--python`` one with this
checkout's (default: the running one); both need pyperformance. One sitting, rounds
interleaved (plain, then each launcher of each revision), each program's figure its median
over the rounds; the table gives each launcher's wall time as a ratio to plain Python, for
both revisions, and their quotient (this / base: above 1 is slower). The launchers:
``memtrim run`` (default and ``--exact``) and the line profiler with every function traced
(``python -m memtrim -o /dev/null -f '*'``); then ``python -m memtrim examples/article.py``
(both interpreters need numpy for it).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import WORKLOADS, bench_env, geomean, missing, run_rounds

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "article.py"


def launchers(python: str, out: str, tag: str, force: str) -> dict[str, list[str]]:
    """The memtrim launchers of one revision (``force``: its overwrite flag)."""
    memtrim = [python, "-m", "memtrim"]
    return {
        f"run {tag}": [*memtrim, "run", "-q", force, "-o", f"{out}/{tag}-{{name}}.memtrim"],
        f"run --exact {tag}": [
            *memtrim,
            "run",
            "--exact",
            "-q",
            force,
            "-o",
            f"{out}/{tag}x-{{name}}.memtrim",
        ],
        f"line -f '*' {tag}": [*memtrim, "-o", "/dev/null", "-f", "*"],
    }


def force_flag(python: str) -> str:
    """``--force`` where the revision knows it (every command), else the older ``-f``."""
    helped = subprocess.run(
        [python, "-m", "memtrim", "run", "--help"], capture_output=True, text=True
    )
    return "--force" if "--force" in helped.stdout else "-f"


def article(pythons: dict[str, str], rounds: int) -> dict[str, float]:
    """Median wall seconds of the article's example, plain and under each revision."""
    cmds = {"plain": [pythons["this"], str(EXAMPLE)]}
    for tag, python in pythons.items():
        cmds[tag] = [python, "-m", "memtrim", "-o", "/dev/null", str(EXAMPLE)]
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(rounds):
        for name, cmd in cmds.items():
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, env=bench_env(), cwd=ROOT)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


INSTRUCTION_MODES = {
    "memtrim run": lambda force: ["run", "-q", force, "-o", "cg.memtrim"],
    "memtrim run --exact": lambda force: ["run", "--exact", "-q", force, "-o", "cg.memtrim"],
    "line -f '*'": lambda force: ["-o", "/dev/null", "-f", "*"],
}


def instructions(pythons: dict[str, str], workload: str, scale: float) -> dict[str, dict]:
    """{mode: {revision: instructions}} of one workload under each launcher, counted by
    valgrind's callgrind: the same count whatever else the machine does."""
    counts: dict[str, dict] = {mode: {} for mode in INSTRUCTION_MODES}
    for tag, python in pythons.items():
        force = force_flag(python)
        for mode, options in INSTRUCTION_MODES.items():
            with tempfile.TemporaryDirectory() as out:
                prefix = [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}/cg.out",
                    python,
                    "-m",
                    "memtrim",
                    *options(force),
                ]
                env = bench_env(PYTHON=python, WORKLOADS=workload, WORKLOAD_SCALE=str(scale))
                subprocess.run(
                    ["bash", str(WORKLOADS), *prefix],
                    capture_output=True,
                    env=env,
                    cwd=out,
                    check=True,
                )
                summary = next(
                    line
                    for line in Path(out, "cg.out").read_text().splitlines()
                    if line.startswith("summary:")
                )
                counts[mode][tag] = int(summary.split()[1])
    return counts


def table(results: dict[str, dict[str, tuple[float, int]]], modes: list[str]) -> list[str]:
    plain = results["plain"]
    head = "| program | plain s | " + " | ".join(
        f"{mode} base | {mode} this | this/base" for mode in modes
    )
    rows = [head + " |", "|---" * (2 + 3 * len(modes)) + "|"]
    ratios: dict[str, list[float]] = {key: [] for mode in modes for key in (mode, mode + "/")}
    quotients: dict[str, list[float]] = {mode: [] for mode in modes}
    for program, (seconds, _) in sorted(plain.items()):
        cells = [program, f"{seconds:.2f}"]
        for mode in modes:
            base = results[f"{mode} base"][program][0] / seconds
            this = results[f"{mode} this"][program][0] / seconds
            ratios[mode].append(base)
            ratios[mode + "/"].append(this)
            quotients[mode].append(this / base)
            cells += [f"{base:.2f}×", f"{this:.2f}×", f"{this / base:.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    cells = ["**geometric mean**", ""]
    for mode in modes:
        cells += [
            f"**{geomean(ratios[mode]):.2f}×**",
            f"**{geomean(ratios[mode + '/']):.2f}×**",
            f"**{geomean(quotients[mode]):.3f}**",
        ]
    rows.append("| " + " | ".join(cells) + " |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="interpreter with the earlier memtrim")
    parser.add_argument("--python", default=sys.executable, help="interpreter with this one")
    parser.add_argument("--label-base", default="base", help="what the base is (a revision)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "revisions.md"))
    parser.add_argument(
        "--callgrind",
        metavar="WORKLOAD",
        default="float",
        help="also count the instructions of this workload at scale 0.2 under each "
        "launcher (valgrind; 'none' to skip)",
    )
    args = parser.parse_args()
    for python in (args.base, args.python):
        why = missing(python)
        if why:
            parser.error(f"{python}: {why}")
    started = time.time()
    with tempfile.TemporaryDirectory() as out:
        chosen = {"plain": [args.python]}
        for tag, python in (("base", args.base), ("this", args.python)):
            chosen.update(launchers(python, out, tag, force_flag(python)))
        results = run_rounds(chosen, args.python, args.scale, args.rounds, Path(out))
    modes = ["run", "run --exact", "line -f '*'"]
    print("\n".join(table(results, modes)), flush=True)  # in case the example fails
    example = article({"base": args.base, "this": args.python}, max(args.rounds, 5))
    counted = {}
    if args.callgrind != "none" and shutil.which("valgrind"):
        counted = instructions({"base": args.base, "this": args.python}, args.callgrind, 0.2)
    lines = [
        "# memtrim against an earlier revision of itself",
        "",
        f"Written by `python benchmarks/compare_revisions.py` on "
        f"{datetime.date.today().isoformat()}: Python {platform.python_version()}, "
        f"{platform.machine()}, one sitting of {(time.time() - started) / 60:.0f} minutes, "
        f"{args.rounds} interleaved rounds, workload scale {args.scale}. Base: "
        f"{args.label_base}; this: the checkout. Ratios are wall time over plain Python; "
        "this/base above 1 means this revision is slower. This machine is shared and noisy: "
        "differences of a few % are within one sitting's noise.",
        "",
        "## The shared workloads",
        "",
        *table(results, modes),
        "",
        "## The article's example (`python -m memtrim examples/article.py`)",
        "",
        "| | seconds | ratio to plain |",
        "|---|---|---|",
        *(
            f"| {name} | {seconds:.3f} | {seconds / example['plain']:.2f}× |"
            for name, seconds in example.items()
        ),
        "",
    ]
    if counted:
        lines += [
            f"## Instructions: `{args.callgrind}` at scale 0.2",
            "",
            "Counted by valgrind's callgrind, start-up and imports included: unlike wall time, "
            "the same on every run.",
            "",
            "| launcher | base | this | this/base |",
            "|---|---|---|---|",
            *(
                f"| {mode} | {by['base']:,} | {by['this']:,} | {by['this'] / by['base']:.4f} |"
                for mode, by in counted.items()
            ),
            "",
        ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
