"""`memtrim run`: the profiled program behaves exactly as without memtrim (issue 16).

Each case runs a small program under python and under `memtrim run`, and compares
exit status, standard output and standard error (less memtrim's summary, which
follows the program's output on standard error), then opens the capture.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import zlib

import pytest

from memtrim.model import files
from memtrim.run import capture as capture_file
from tests.conftest import subprocess_env

SUMMARY_START = "memtrim run: "
MIB = 2**20


def both(runner, source, *options, buffered=False, timeout=60):
    """The program under python, then under `memtrim run`. ``buffered``: standard
    output block-buffered, as on a pipe by default."""
    script = runner.write(source, "prog.py")
    env = subprocess_env()
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    memtrim = ["-m", "memtrim", "run", "--force", "-o", "out.memtrim", *options]
    return [
        subprocess.run(
            [sys.executable, *prefix, str(script)],
            capture_output=True,
            text=True,
            cwd=runner.tmp_path,
            env=env,
            timeout=timeout,
        )
        for prefix in ([], memtrim)
    ]


def program_part(stderr: str) -> str:
    """Standard error before memtrim's summary."""
    index = stderr.find(SUMMARY_START)
    return stderr if index < 0 else stderr[:index]


def same(plain, traced, status=None):
    """The program ended, printed and complained as under python."""
    assert traced.returncode == plain.returncode, traced.stderr
    if status is not None:
        assert plain.returncode == status, plain.stderr
    assert traced.stdout == plain.stdout
    assert program_part(traced.stderr) == plain.stderr


def captured(runner):
    return capture_file.read(str(runner.tmp_path / "out.memtrim"))


def line_bytes(capture, view, lineno, filename="prog.py"):
    return sum(
        site.bytes
        for site in capture_file.sites(capture, view)
        if site.frame.filename.endswith(filename) and site.frame.lineno == lineno
    )


# ------------------------------------------------------------- 1. tracemalloc

TRACEMALLOC = """\
import atexit, sys, tracemalloc
tracemalloc.start()
N = 8 * 2**20
ME = __file__

def measure(where):
    before = tracemalloc.get_traced_memory()[0]
    block = bytearray(N)
    grew = tracemalloc.get_traced_memory()[0] - before
    snapshot = tracemalloc.take_snapshot()
    mine = sum(s.size for s in snapshot.statistics("filename") if s.traceback[0].filename == ME)
    print(where, tracemalloc.is_tracing(), 0 <= grew - N < 1000, mine >= N)
    del block

atexit.register(measure, "atexit")
measure("main")
keep = bytearray(N)
"""


def test_a_program_that_uses_tracemalloc(runner):
    # take_snapshot deadlocked (memtrim's hook, called by tracemalloc under its
    # lock, allocated through tracemalloc again); after the main code returned,
    # memtrim took tracemalloc's hooks off before the program's atexit handlers
    plain, traced = both(runner, TRACEMALLOC, "-q", timeout=60)
    same(plain, traced, 0)
    assert plain.stdout == "main True True True\natexit True True True\n"
    capture = captured(runner)
    assert line_bytes(capture, "at_exit", 17) >= 8 * MIB  # memtrim's figures too
    assert line_bytes(capture, "allocated", 8) >= 16 * MIB  # in main and in atexit


# --------------------------------------------------- 2. closed or missing streams


@pytest.mark.parametrize(
    "ending",
    ["sys.stdout.close()", "sys.stderr.close()", "sys.stdout = None; sys.stderr = None"],
)
def test_closed_or_missing_streams(runner, ending):
    source = f"import sys\nkeep = bytearray(10**6)\nprint('hello', flush=True)\n{ending}\n"
    plain, traced = both(runner, source)
    same(plain, traced, 0)
    assert SUMMARY_START in traced.stderr and "Traceback" not in traced.stderr
    assert line_bytes(captured(runner), "at_exit", 2) >= 10**6


# --------------------------------------------------- 3. the working directory


def test_a_program_that_removes_its_working_directory(runner):
    source = (
        "import os\nkeep = bytearray(10**6)\nos.mkdir('gone')\nos.chdir('gone')\n"
        "os.rmdir(os.getcwd())\nprint('done')\n"
    )
    plain, traced = both(runner, source, "--json", "out.json")
    same(plain, traced, 0)
    assert "Traceback" not in traced.stderr and "prog.py:2" in traced.stderr
    assert line_bytes(captured(runner), "at_exit", 2) >= 10**6
    assert (runner.tmp_path / "out.json").exists()


def test_a_program_that_changes_directory(runner):
    (runner.tmp_path / "elsewhere").mkdir()
    source = "import os\nkeep = bytearray(10**6)\nos.chdir('elsewhere')\nprint(os.getcwd())\n"
    plain, traced = both(runner, source, "--html", "out.html")
    same(plain, traced, 0)
    assert captured(runner).peak_bytes >= 10**6
    assert (runner.tmp_path / "out.html").exists()
    assert not list((runner.tmp_path / "elsewhere").iterdir())


# ------------------------------------------------------ 4. os._exit, buffered


def test_os_exit_keeps_unflushed_output_lost(runner):
    # stdout is a pipe: block-buffered, the print is still in the buffer
    source = "import os\nkeep = bytearray(10**6)\nprint('never flushed')\nos._exit(4)\n"
    plain, traced = both(runner, source, buffered=True)
    same(plain, traced, 4)
    assert traced.stdout == ""
    capture = captured(runner)  # written before the process went
    assert capture.meta["exit"] == {"kind": "os._exit", "code": 4}
    assert line_bytes(capture, "at_exit", 2) >= 10**6


# ------------------------------------------- 5. threads that outlive the main code

LATE_THREAD = """\
import threading, time

def late():
    time.sleep(0.3)
    block = bytearray(64 * 2**20)
    time.sleep(0.05)
    print("thread done")

threading.Thread(target=late).start()
print("main done")
"""


def test_a_thread_that_allocates_after_the_main_code_returned(runner):
    plain, traced = both(runner, LATE_THREAD)
    same(plain, traced, 0)
    assert plain.stdout == "main done\nthread done\n"
    capture = captured(runner)
    assert capture.peak_bytes >= 64 * MIB  # was 5.2 KiB: the run ended with the main code
    assert line_bytes(capture, "peak", 5) >= 64 * MIB


def test_the_programs_atexit_handlers_are_profiled(runner):
    source = (
        "import atexit\n"
        "def at_end():\n"
        "    block = bytearray(32 * 2**20)\n"
        "    print('bye', len(block))\n"
        "atexit.register(at_end)\n"
    )
    plain, traced = both(runner, source)
    same(plain, traced, 0)
    assert line_bytes(captured(runner), "peak", 3) >= 32 * MIB


# ----------------------------------------------------- 6. crafted captures


def _capture_dict(runner):
    runner.write("keep = bytearray(10**5)\n", "small.py")
    made = runner.memtrim("run", "-q", "-o", "good.memtrim", "small.py")
    assert made.returncode == 0, made.stderr
    return capture_file.read(str(runner.tmp_path / "good.memtrim")).to_dict()


def _pack(body: bytes) -> bytes:
    data = zlib.compress(body, 9)
    return files.HEADER.pack(files.KINDS["capture"].magic, 3, 0, len(data)) + data


def _damage(data, how):
    if how == "frame index":
        data["nodes"][-1][1] = len(data["frames"])
    elif how == "sources line":
        data["sources"] = {"prog.py": {"²": "x = 1"}}
    elif how == "sources shape":
        data["sources"] = {"prog.py": ["x = 1"]}
    elif how == "timeline NaN":
        data["timeline"][0][0] = math.nan
    elif how == "meta NaN":
        data["meta"]["duration"] = math.inf
    elif how == "meta command":
        data["meta"]["command"] = 5
    elif how == "meta rss":
        data["meta"]["rss"] = {"peak": 5}
    elif how == "meta sample_bytes":
        data["meta"]["sample_bytes"] = "256K"
    elif how == "meta tree_full_blocks":
        data["meta"]["tree_full_blocks"] = "x"
    elif how == "timeline length":
        data["timeline"] = [[0, 0, 0]] * 10_001
    return data


@pytest.mark.parametrize(
    "how",
    [
        "frame index",
        "sources line",
        "sources shape",
        "timeline NaN",
        "meta NaN",
        "meta command",
        "meta rss",
        "meta sample_bytes",
        "meta tree_full_blocks",
        "timeline length",
    ],
)
def test_a_crafted_capture_is_refused_in_one_line(runner, how):
    body = json.dumps(_damage(_capture_dict(runner), how)).encode()  # NaN as python writes it
    (runner.tmp_path / "bad.memtrim").write_bytes(_pack(body))
    for extra in ([], ["--json", "bad.json"]):
        proc = runner.memtrim("report", "bad.memtrim", *extra)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("memtrim: bad.memtrim is corrupt")
    assert not (runner.tmp_path / "bad.json").exists()


def test_a_capture_that_inflates_too_far_is_refused_before_it_is(runner):
    data = _capture_dict(runner)
    data["meta"]["padding"] = " " * (files.MIN_LIMIT + 1)  # compresses ~1000x
    (runner.tmp_path / "bomb.memtrim").write_bytes(_pack(json.dumps(data).encode()))
    proc = runner.memtrim("report", "bomb.memtrim")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "inflates past" in proc.stderr


# ------------------------------------------------------ 8. the files written


def test_every_file_written_is_named_with_its_size(runner):
    source = "keep = bytearray(10**6)\n"
    plain, traced = both(runner, source, "--html", "r.html", "--json", "r.json")
    same(plain, traced, 0)
    named = dict(re.findall(r"(\S+) \((\d+(?:\.\d)? (?:B|KiB|MiB))\)", traced.stderr))
    assert set(named) == {"out.memtrim", "r.html", "r.json"}, traced.stderr
    from memtrim.model.units import human

    for name, shown in named.items():
        assert shown == human(os.path.getsize(runner.tmp_path / name))
    report = runner.memtrim("report", "out.memtrim", "--json", "again.json")
    assert report.returncode == 0
    size = human(os.path.getsize(runner.tmp_path / "again.json"))
    assert report.stderr == f"wrote again.json ({size})\n"


# ----------------------------------------------------- what works: the matrix

MATRIX = {
    "raise": "raise ValueError('boom')\n",
    "sys.exit(3)": "import sys\nprint('bye')\nsys.exit(3)\n",
    "os._exit(0)": "import os, sys\nprint('bye', flush=True)\nos._exit(0)\n",
    "SIGINT": "import os, signal\nprint('hi', flush=True)\nos.kill(os.getpid(), signal.SIGINT)\n"
    "import time\ntime.sleep(5)\n",
    "SIGTERM": "import os, signal\nprint('hi', flush=True)\nos.kill(os.getpid(), signal.SIGTERM)\n"
    "import time\ntime.sleep(5)\n",
    "MemoryError": "block = bytearray(2**62)\n",
    "os.fork": "import os\npid = os.fork()\nif pid == 0:\n    print('child', flush=True)\n"
    "    os._exit(7)\n_, status = os.waitpid(pid, 0)\n"
    "print('parent', os.waitstatus_to_exitcode(status))\n",
    "spawn": "import multiprocessing as mp\ndef work(n):\n    return len(bytearray(n))\n"
    "if __name__ == '__main__':\n    with mp.get_context('spawn').Pool(1) as pool:\n"
    "        print(pool.map(work, [10, 20]))\n",
    "8 threads": "import threading\nout = []\n"
    "def work(i):\n    out.append(len(bytearray(i * 1000)))\n"
    "threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]\n"
    "for t in threads: t.start()\nfor t in threads: t.join()\nprint(sorted(out))\n",
    "asyncio": "import asyncio\nasync def work(n):\n    await asyncio.sleep(0.01)\n"
    "    return len(bytearray(n))\nasync def main():\n"
    "    return await asyncio.gather(*(work(i) for i in range(5)))\n"
    "print(asyncio.run(main()))\n",
    "sys.setprofile": "import sys\ncalls = []\ndef prof(frame, event, arg):\n"
    "    if event == 'call': calls.append(frame.f_code.co_name)\n"
    "def f():\n    return bytearray(100)\nsys.setprofile(prof)\nf()\nsys.setprofile(None)\n"
    "print('f' in calls)\n",
}
STATUS = {"raise": 1, "sys.exit(3)": 3, "SIGINT": -2, "SIGTERM": -15, "MemoryError": 1}


@pytest.mark.parametrize("case", list(MATRIX))
def test_the_matrix_of_endings(runner, case):
    plain, traced = both(runner, MATRIX[case], "-q")
    same(plain, traced, STATUS.get(case, 0))
    assert captured(runner).meta["exit"]["code"] == STATUS.get(case, 0)
