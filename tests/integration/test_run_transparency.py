"""`memtrim run` leaves the program's streams, directory and output exactly as python does.

Each case runs the program under python and under `memtrim run`, and compares exit
status, standard output and standard error (less memtrim's summary, which follows the
program's output on standard error).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from memtrim.run import capture as capture_file
from tests.conftest import subprocess_env

SUMMARY_START = "memtrim run: "


def both(runner, source, *options, buffered=False):
    """The program under python, then under `memtrim run`. ``buffered``: standard output
    block-buffered, as on a pipe by default (PYTHONUNBUFFERED may be set around us)."""
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
            timeout=120,
        )
        for prefix in ([], memtrim)
    ]


def program_part(stderr: str) -> str:
    """Standard error before memtrim's summary."""
    index = stderr.find(SUMMARY_START)
    return stderr if index < 0 else stderr[:index]


@pytest.mark.parametrize(
    "ending",
    [
        "sys.stderr.close()",
        "sys.stderr = None",
        "sys.stdout.close()",
        "sys.stdout = None",
        "sys.stdout.close(); sys.stderr.close()",
    ],
)
def test_closed_or_missing_streams(runner, ending):
    source = f"import sys\nkeep = bytearray(10**6)\nprint('hello')\nsys.stdout.flush()\n{ending}\n"
    plain, traced = both(runner, source)
    assert traced.returncode == plain.returncode == 0, traced.stderr
    assert traced.stdout == plain.stdout == "hello\n"
    assert program_part(traced.stderr) == plain.stderr
    assert SUMMARY_START in traced.stderr  # memtrim still speaks, on its own copy of fd 2
    assert (runner.tmp_path / "out.memtrim").exists()


def test_a_removed_working_directory(runner):
    source = (
        "import os\nkeep = bytearray(10**6)\nos.mkdir('gone')\nos.chdir('gone')\n"
        "os.rmdir(os.getcwd())\nprint('done')\n"
    )
    plain, traced = both(runner, source)
    assert traced.returncode == plain.returncode == 0, traced.stderr
    assert traced.stdout == plain.stdout == "done\n"
    assert "prog.py:2" in traced.stderr  # paths shown from where the program started
    assert (runner.tmp_path / "out.memtrim").exists()


def test_a_program_that_changes_directory_leaves_its_files_where_asked(runner):
    (runner.tmp_path / "elsewhere").mkdir()
    source = "import os\nkeep = bytearray(10**6)\nos.chdir('elsewhere')\n"
    plain, traced = both(runner, source, "--json", "out.json", "-q")
    assert traced.returncode == plain.returncode == 0, traced.stderr
    assert (runner.tmp_path / "out.memtrim").exists()
    assert (runner.tmp_path / "out.json").exists()
    assert not list((runner.tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize("options", [("-q",), ()], ids=["quiet", "summary"])
@pytest.mark.parametrize("ending", ["os._exit(4)", "os.kill(os.getpid(), signal.SIGTERM)"])
def test_unflushed_output_is_lost_as_under_python(runner, ending, options):
    # stdout is a pipe here: block-buffered, so the print is still in the buffer
    source = (
        "import os, signal, sys\nkeep = bytearray(10**6)\nprint('never flushed')\n"
        f"{ending}\nimport time; time.sleep(5)\n"
    )
    plain, traced = both(runner, source, *options, buffered=True)
    assert traced.returncode == plain.returncode != 0
    assert traced.stdout == plain.stdout == ""
    info = capture_file.read(str(runner.tmp_path / "out.memtrim")).meta["exit"]
    assert info["kind"] in ("os._exit", "signal")
