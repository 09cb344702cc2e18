"""``memtrim run`` on long code objects: the time per statement must not grow with length.

    python benchmarks/bench_long_code.py [--sizes 20000,40000,80000]

The program (issue 16): a generated module of N statements ``xK = [i] * 3``, each
allocating. Wall seconds, in one sitting, each in its own process: plain python,
``memtrim run`` (the whole command: profile, capture, summary) and ``memray run`` if
installed. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_module(path: Path, statements: int) -> None:
    path.write_text("".join(f"x{i % 50} = [{i}] * 3\n" for i in range(statements)))


def wall(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,40000,80000")
    args = parser.parse_args()
    memray = shutil.which("memray") or (
        str(Path(sys.executable).with_name("memray"))
        if Path(sys.executable).with_name("memray").exists()
        else None
    )
    py = sys.version.split()[0]
    print(f"| N statements | plain {py} | memtrim run | ratio | memray run | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for size in (int(s) for s in args.sizes.split(",")):
            script = work / f"long{size}.py"
            write_module(script, size)
            plain = wall([sys.executable, str(script)], work)
            out = str(work / "out.memtrim")
            ours = wall([sys.executable, "-m", "memtrim", "run", "-q", "--force", "-o", out,
                         str(script)], work)  # fmt: skip
            theirs = "n/a"
            ratio = "n/a"
            if memray:
                seconds = wall([memray, "run", "-f", "-o", str(work / "m.bin"), str(script)], work)
                theirs, ratio = f"{seconds:.2f}", f"{seconds / plain:.1f}x"
            row = f"| {size:,} | {plain:.2f} | {ours:.2f} | {ours / plain:.1f}x"
            print(f"{row} | {theirs} | {ratio} |")


if __name__ == "__main__":
    main()
