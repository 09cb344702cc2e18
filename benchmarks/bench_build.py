"""How long memtrim takes, after a big program ends, to give its profile; memray beside.

    python benchmarks/bench_build.py [--modules N] [--functions M]

The program (issue 15): N modules (default 1000) of M functions each (default 150), every
function called twice and allocating a little, so that the profile has N x M x 3 lines. Timed,
in one sitting, each in its own process:

- the program under plain python;
- memtrim, in process: the program under ``ProgramProfiler``, then building the capture
  (``stop()``), encoding it (the capture file), the terminal summary, the HTML page;
- ``memtrim run -q`` (the whole command) and ``memtrim report`` / ``--html`` of its capture;
- ``memray run``, ``memray stats`` and ``memray flamegraph`` of its capture (if memray is
  installed): what memray's user waits for to see the same.

Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

IN_PROCESS = textwrap.dedent(
    """
    import io, runpy, sys, time
    sys.path.insert(0, ".")
    from memtrim.run.session import ProgramProfiler
    from memtrim.run import capture as capture_file
    from memtrim.run.render.summary import render_summary
    from memtrim.run.render.html import render_html
    profiler = ProgramProfiler()
    profiler.start()
    t0 = time.perf_counter()
    runpy.run_path("main.py", run_name="__main__")
    t1 = time.perf_counter()
    capture = profiler.stop()
    t2 = time.perf_counter()
    data = capture_file.dumps(capture)
    t3 = time.perf_counter()
    render_summary(capture, io.StringIO())
    t4 = time.perf_counter()
    page = render_html(capture)
    t5 = time.perf_counter()
    print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, len(capture.nodes), len(data), len(page))
    """
)


def write_program(folder: Path, modules: int, functions: int) -> None:
    pkg = folder / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    body = "".join(
        f"def f{i}(n):\n    return [bytearray(8) for _ in range(n)]\n\n" for i in range(functions)
    )
    for m in range(modules):
        (pkg / f"m{m}.py").write_text(body)
    (folder / "main.py").write_text(
        "import importlib\nkeep = []\n"
        f"for m in range({modules}):\n"
        "    mod = importlib.import_module(f'pkg.m{m}')\n"
        f"    for i in range({functions}):\n"
        "        keep.append(getattr(mod, f'f{i}')(2))\n"
    )


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=1000)
    parser.add_argument("--functions", type=int, default=150)
    args = parser.parse_args()
    py = sys.executable
    rows: list[tuple[str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_program(work, args.modules, args.functions)
        env_note = ""
        rows.append(("the program, plain python", timed([py, "main.py"], work)))
        proc = subprocess.run([py, "-c", IN_PROCESS], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        program, build, encode, summary, html, nodes, size, _page = proc.stdout.split()
        rows += [
            ("memtrim: the program under the profiler", float(program)),
            ("memtrim: building the capture (`stop()`)", float(build)),
            ("memtrim: encoding the capture file", float(encode)),
            ("memtrim: the terminal summary", float(summary)),
            ("memtrim: the HTML page", float(html)),
        ]
        env_note = f"{int(nodes):,} call-tree nodes; capture {int(size) / 2**20:.1f} MiB"
        rows.append(
            (
                "`memtrim run -q` (the whole command)",
                timed(memtrim("run", "-q", "-o", "c.memtrim", "main.py"), work),
            )
        )
        rows.append(
            ("`memtrim report c.memtrim` (summary)", timed(memtrim("report", "c.memtrim"), work))
        )
        rows.append(
            (
                "`memtrim report c.memtrim --html`",
                timed(memtrim("report", "c.memtrim", "--html", "r.html"), work),
            )
        )
        if shutil.which("memray") or _has(py, "memray"):
            rows.append(
                (
                    "`memray run` (the whole command)",
                    timed([py, "-m", "memray", "run", "-q", "-o", "m.bin", "main.py"], work),
                )
            )
            rows.append(
                ("`memray stats m.bin`", timed([py, "-m", "memray", "stats", "m.bin"], work))
            )
            rows.append(
                (
                    "`memray flamegraph m.bin`",
                    timed([py, "-m", "memray", "flamegraph", "-o", "m.html", "m.bin"], work),
                )
            )
        else:
            rows.append(("memray", "not installed"))
    print("## Capture build of a big program (issue 15)\n")
    print(
        f"`python benchmarks/bench_build.py`: {args.modules} modules x {args.functions} functions, "
        f"Python {sys.version.split()[0]}; {env_note}. Wall seconds, one run of each.\n"
    )
    print("| step | seconds |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value if isinstance(value, str) else f'{value:.2f}'} |")
    return 0


def memtrim(*args: str) -> list[str]:
    return [sys.executable, "-m", "memtrim", *args]


def _has(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())
