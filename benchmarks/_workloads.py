"""Running ``../shared/bench/workloads.sh`` under launchers: shared by the benchmarks.

Each launcher runs the eight programs in one process per program; rounds go
through every launcher in turn (interleaved), so a slow spell on this shared
machine hits all launchers alike, and each program's figure is its median
over the rounds.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT.parent / "shared" / "bench" / "workloads.sh"


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for measured runs: bytecode caches on, as on a user's machine.

    With ``PYTHONDONTWRITEBYTECODE`` set (some sandboxes set it), every run
    would compile memtrim's modules and the program's from source again.
    """
    env = dict(os.environ, **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def missing(python: str) -> str | None:
    """Why the workloads cannot run with ``python``, or None if they can."""
    if not WORKLOADS.exists():
        return "`../shared/bench/workloads.sh` missing"
    if subprocess.run([python, "-c", "import pyperformance"], capture_output=True).returncode:
        return "`pip install pyperformance` first"
    return None


def _parse(line: str, prefix: list[str], stderr: str) -> tuple[str, float]:
    """(program, wall seconds) from one of workloads.sh's TSV lines; a failed run raises."""
    name, status, seconds = line.split("\t")
    if status != "0":
        raise RuntimeError(f"workload {name} failed under {prefix[:6]}: {stderr[-2000:]}")
    return name, float(seconds)


def run_once(
    prefix: list[str], python: str, scale: float, cwd: Path, rss_file: str | None = None
) -> dict[str, tuple[float, int]]:
    """{program: (wall seconds, peak RSS bytes or 0)} for one run of every program.

    ``rss_file`` (with ``{name}`` in it) wraps each program in ``/usr/bin/time``
    to read its peak RSS.
    """
    if rss_file:
        prefix = ["/usr/bin/time", "-f", "%M", "-o", rss_file, *prefix]
    env = bench_env(PYTHON=python, WORKLOAD_SCALE=str(scale))
    proc = subprocess.run(
        ["bash", str(WORKLOADS), *prefix], capture_output=True, text=True, env=env, cwd=cwd
    )
    results = {}
    for line in proc.stdout.splitlines():
        name, seconds = _parse(line, prefix, proc.stderr)
        rss = 0
        if rss_file:
            rss = int(Path(cwd, rss_file.format(name=name)).read_text().split()[-1]) * 1024
        results[name] = (seconds, rss)
    return results


def run_capped(
    prefix: list[str], python: str, scale: float, cwd: Path, names: list[str], cap: float
) -> dict[str, float | None]:
    """{program: wall seconds, or None if it ran longer than ``cap`` seconds and was stopped}.

    For launchers so slow that the whole set would take hours: each program runs alone
    (``WORKLOADS=name``) in its own session, killed as a group at the cap.
    """
    results: dict[str, float | None] = {}
    for name in names:
        env = bench_env(PYTHON=python, WORKLOAD_SCALE=str(scale), WORKLOADS=name)
        with subprocess.Popen(
            ["bash", str(WORKLOADS), *prefix],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        ) as proc:
            try:
                out, _ = proc.communicate(timeout=cap)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                results[name] = None
                continue
        results[name] = _parse(out.strip().splitlines()[-1], prefix, "")[1]
    return results


def run_rounds(
    launchers: dict[str, list[str]],
    python: str,
    scale: float,
    rounds: int,
    cwd: Path,
    rss: bool = False,
) -> dict[str, dict[str, tuple[float, int]]]:
    """{launcher: {program: (median seconds, median peak RSS)}} over interleaved rounds."""
    runs: dict[str, list[dict[str, tuple[float, int]]]] = {name: [] for name in launchers}
    for _ in range(rounds):
        for index, (name, prefix) in enumerate(launchers.items()):
            rss_file = f"rss-{index}-{{name}}.txt" if rss else None
            runs[name].append(run_once(prefix, python, scale, cwd, rss_file))
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for name, results in runs.items():
        programs = results[0]
        out[name] = {
            program: (
                statistics.median(r[program][0] for r in results),
                int(statistics.median(r[program][1] for r in results)),
            )
            for program in programs
        }
    return out


def geomean(values: list[float]) -> float:
    """Geometric mean of positive ratios."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one run; fails loudly if the command fails."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or bench_env(), cwd=ROOT)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def median_of(cmds: dict[str, list[str]], repeat: int) -> dict[str, float]:
    """Run the commands in turn ``repeat`` times (interleaved); median seconds each."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            times[name].append(timed(cmd))
    return {name: statistics.median(values) for name, values in times.items()}
