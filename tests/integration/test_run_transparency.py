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


ATEXIT_STATE = """\
import atexit, os, sys
def show():
    main = sys.modules["__main__"]
    print("atexit", sys.argv, os.path.basename(sys.path[0] or "-"), main.__name__,
          hasattr(main, "__file__"), hasattr(main, "__cached__"), main.__dict__ is globals())
atexit.register(show)
print("main", sys.argv, hasattr(sys.modules["__main__"], "__file__"))
"""


@pytest.mark.parametrize(
    "prefix",
    [
        ["-m", "memtrim", "run", "-q", "--force", "-o", "out.memtrim"],
        ["-m", "memtrim", "-o", "out.txt"],
        ["-m", "memtrim", "record", "-o", "out.dat"],
    ],
    ids=["run", "lines", "record"],
)
@pytest.mark.parametrize("kind", ["script", "module", "code"])
def test_atexit_handlers_see_the_program_s_state_as_under_python(runner, prefix, kind):
    # sys.argv, sys.path[0] and __main__ as python leaves them after the main code
    # (a script's __file__ and __cached__ removed), not memtrim's put back
    runner.write(ATEXIT_STATE, "prog.py")
    target = {"script": ["prog.py", "a"], "module": ["-m", "prog", "a"]}.get(kind)
    if target is None:
        target = ["-c", ATEXIT_STATE, "a"]
    if kind != "script" and "run" not in prefix:
        pytest.skip("the line profiler and memtrim record run scripts only")
    results = [
        subprocess.run(
            [sys.executable, *command, *target],
            capture_output=True,
            text=True,
            cwd=runner.tmp_path,
            env=subprocess_env(),
            timeout=120,
        )
        for command in ([], prefix)
    ]
    plain, traced = results
    assert plain.returncode == traced.returncode == 0, traced.stderr
    assert traced.stdout == plain.stdout
    assert "atexit" in plain.stdout
