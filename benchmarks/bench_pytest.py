"""Benchmark the pytest plugin on a real test suite nobody here wrote, pytest-memray beside.

    python benchmarks/bench_pytest.py [--quick]

The suite is attrs's own (``tests/`` of its source distribution, downloaded with
``pip download --no-binary :all: --no-deps``, run from ``src/`` without installing
it). Interleaved rounds (3; 1 with ``--quick``), median wall time of each:

- plain pytest, memtrim's plugin turned off (``-p no:memtrim``);
- memtrim's plugin with every test limited (``--memtrim-limit 1GB``: every test is
  measured, as a project-wide default limit does);
- pytest-memray (``--memray``: every test is tracked; it has no option to limit every
  test, limits are only its markers), and ``--memray --trace-python-allocators``, which
  sees pymalloc's allocations as memtrim does.

The target (issue 14): memtrim at most 1.3x plain pytest. Every run must pass the same
tests: the section says loudly when one does not.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workloads import bench_env

LIBRARY = "attrs"
VERSION = "26.1.0"  # pinned: the numbers in docs/benchmarks.md are of this suite
TEST_NEEDS = {"hypothesis": "hypothesis", "cloudpickle": "cloudpickle", "pympler": "pympler"}
# tests/test_packaging.py reads the installed distribution's metadata: the sdist runs
# from src/ without being installed, so it is left out
IGNORED = ["tests/test_packaging.py"]
# -p no:asyncio: pytest-asyncio (if installed) warns at configure time and attrs turns
# warnings into errors; --hypothesis-seed: the same examples in every run
COMMON = ["-q", "-p", "no:cacheprovider", "-p", "no:asyncio", "-rfE", "--hypothesis-seed=0"]
TARGET = 1.3  # memtrim's run at most this times plain pytest's
PLAIN = "plain pytest"
MEMTRIM = "memtrim, every test limited"
MEMRAY = "pytest-memray"
MEMRAY_PY = "pytest-memray, pymalloc traced"
LAUNCHERS = {
    PLAIN: ["-p", "no:memtrim"],
    MEMTRIM: ["--memtrim-limit", "1GB"],
    MEMRAY: ["-p", "no:memtrim", "--memray"],
    MEMRAY_PY: ["-p", "no:memtrim", "--memray", "--trace-python-allocators"],
}
_COUNT = re.compile(r"(\d+) (subtests \w+|\w+)")
_FAILED = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$", re.MULTILINE)


class Outcome:
    """One pytest run: wall seconds, the summary's counts, the failed test ids."""

    def __init__(self, seconds: float, proc: subprocess.CompletedProcess[str]) -> None:
        self.seconds = seconds
        self.output = proc.stdout + proc.stderr
        tail = [line for line in proc.stdout.splitlines() if re.search(r" in [\d.]+s", line)]
        if proc.returncode not in (0, 1) or not tail:
            raise RuntimeError(f"pytest exited {proc.returncode}:\n{self.output[-3000:]}")
        counts = {kind: int(n) for n, kind in _COUNT.findall(tail[-1].split(" in ")[0])}
        self.counts = {("errors" if k == "error" else k): v for k, v in counts.items()}
        self.failed = {m.group(2): m.group(3) or "" for m in _FAILED.finditer(proc.stdout)}

    @property
    def tests(self) -> int:
        return sum(v for k, v in self.counts.items() if not k.startswith("subtests"))


def _python_has(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def _prepare(python: str, work: Path) -> tuple[Path, str | None]:
    """The unpacked sdist, or why the suite cannot run."""
    download = ["download", "-q", "--no-binary", ":all:", "--no-deps", "-d", str(work)]
    proc = subprocess.run(
        [python, "-m", "pip", *download, f"{LIBRARY}=={VERSION}"],
        capture_output=True,
        text=True,
    )
    archives = sorted(work.glob("*.tar.gz"))
    if proc.returncode != 0 or not archives:
        return work, f"`pip download {LIBRARY}=={VERSION}` failed: {proc.stderr.strip()[-300:]}"
    with tarfile.open(archives[0]) as tar:
        tar.extractall(work, filter="data")
    source = work / archives[0].name.removesuffix(".tar.gz")
    wanted = [pkg for module, pkg in TEST_NEEDS.items() if not _python_has(python, module)]
    if wanted:
        proc = subprocess.run(
            [python, "-m", "pip", "install", "-q", *wanted], capture_output=True, text=True
        )
        if proc.returncode != 0:
            return source, f"`pip install {' '.join(wanted)}` failed: {proc.stderr[-300:]}"
    return source, None


def _pytest(python: str, source: Path, args: list[str], paths: tuple = ("tests",)) -> Outcome:
    env = bench_env(COLUMNS="200")  # the short summary's messages, less cut
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(source / "src"), env.get("PYTHONPATH", "")) if p
    )
    ignores = [f"--ignore={path}" for path in IGNORED]
    cmd = [python, "-m", "pytest", *COMMON, *ignores, *args, *paths]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=source)
    return Outcome(time.perf_counter() - start, proc)


def _plugin_off_works(python: str, work: Path) -> bool:
    """``-p no:memtrim`` really turns memtrim off: pytest then no longer knows its options
    (and does without it). Run in an empty folder: nothing to collect."""
    empty = work / "empty"
    empty.mkdir(exist_ok=True)

    def status(*off: str) -> tuple[int, str]:
        cmd = [python, "-m", "pytest", *off, "--memtrim-limit", "1GB", "--co", "-q"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=empty, env=bench_env())
        return proc.returncode, proc.stderr

    on, (off, stderr) = status()[0], status("-p", "no:memtrim")
    return on == 5 and off == 4 and "--memtrim-limit" in stderr


def run(quick: bool = False, python: str = sys.executable) -> str:
    """The markdown section for docs/benchmarks.md."""
    lines = [f"## The pytest plugin on a real suite: {LIBRARY} {VERSION}'s tests", ""]
    work = Path(tempfile.mkdtemp(prefix="memtrim-pytest-"))
    try:
        source, why_not = _prepare(python, work)
        if why_not:
            return "\n".join([*lines, f"Not run: {why_not}.", ""])
        launchers = dict(LAUNCHERS)
        if not _python_has(python, "pytest_memray"):
            del launchers[MEMRAY], launchers[MEMRAY_PY]
        rounds = 1 if quick else 3
        _pytest(python, source, ["-p", "no:memtrim", "--co"])  # bytecode, rewritten asserts
        runs: dict[str, list[Outcome]] = {name: [] for name in launchers}
        for _ in range(rounds):
            for name, args in launchers.items():
                runs[name].append(_pytest(python, source, args))
        lines += _describe(python, work, rounds, launchers)
        lines += _table(runs)
        lines += _differences(python, source, runs)
        return "\n".join(lines) + "\n"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _describe(python: str, work: Path, rounds: int, launchers: dict[str, list]) -> list[str]:
    base = shlex.join(["python", "-m", "pytest", *COMMON])
    off = "checked" if _plugin_off_works(python, work) else "**NOT effective**"
    lines = [
        f"The test suite of {LIBRARY} {VERSION} from its source distribution (`pip download",
        f"--no-binary :all: --no-deps {LIBRARY}=={VERSION}`), run from `src/` without installing",
        f"it (`{' '.join(IGNORED)}` left out: it reads the installed distribution's metadata).",
        f"{rounds} interleaved round(s), median wall time of the whole `pytest` process.",
        f"Every run is `{base} --ignore=... <options> tests`, the options being:",
        "",
        *[f"- {name}: `{shlex.join(args)}`" for name, args in launchers.items()],
        "",
        f"`-p no:memtrim` turns memtrim's plugin off for the others ({off}: pytest then",
        "rejects `--memtrim-limit`). A limit on every test makes memtrim measure every test;",
        "`--memray` makes pytest-memray track every test (it has no option to limit every",
        "test: its limits are only markers). Target: memtrim at most **1.3×** plain pytest.",
    ]
    if MEMRAY not in launchers:
        lines += ["", "pytest-memray: not installed (`pip install pytest-memray`)."]
    return [*lines, ""]


def _table(runs: dict[str, list[Outcome]]) -> list[str]:
    plain = statistics.median(o.seconds for o in runs[PLAIN])
    first = runs[PLAIN][0]
    counts = ", ".join(f"{v} {k}" for k, v in first.counts.items())
    rows = [
        f"{first.tests} tests ({counts} in the plain run).",
        "",
        "| run | time | ratio to plain | result |",
        "| --- | --- | --- | --- |",
    ]
    for name, outcomes in runs.items():
        seconds = statistics.median(o.seconds for o in outcomes)
        result = ", ".join(f"{v} {k}" for k, v in outcomes[0].counts.items())
        same = all(o.counts == first.counts for o in outcomes)
        flag = "" if same else " **(not the plain run's)**"
        rows.append(f"| {name} | {seconds:.1f} s | **{seconds / plain:.2f}×** | {result}{flag} |")
    ratio = statistics.median(o.seconds for o in runs[MEMTRIM]) / plain
    verdict = "met" if ratio <= TARGET else "**missed**"
    rows += ["", f"memtrim at {ratio:.2f}× plain pytest: the {TARGET}× target is {verdict}."]
    return [*rows, ""]


def _differences(python: str, source: Path, runs: dict[str, list[Outcome]]) -> list[str]:
    plain_failed = set().union(*(o.failed for o in runs[PLAIN]))
    lines = []
    if plain_failed:
        lines.append("Failing in the plain run too (the suite's own, on this Python):")
        lines += [f"- `{test}`: {runs[PLAIN][0].failed.get(test, '')}" for test in plain_failed]
        lines.append("")
    for name, outcomes in runs.items():
        extra = {}
        for outcome in outcomes:
            extra.update({t: m for t, m in outcome.failed.items() if t not in plain_failed})
        if not extra or name == PLAIN:
            continue
        lines.append(f"**Tests that pass plainly but fail under {name}: {len(extra)}**")
        lines += [f"- `{test}`: {message}" for test, message in sorted(extra.items())]
        if name == MEMTRIM:  # their full failure text, once more
            again = _pytest(python, source, [*LAUNCHERS[MEMTRIM], "--tb=short"], tuple(extra))
            lines += ["", "```text", *again.output.splitlines()[-80:], "```"]
        lines.append("")
    if not any(line.startswith("**Tests that pass") for line in lines):
        lines += ["Every run passed and failed the same tests as the plain run.", ""]
    return lines


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv[1:]))
