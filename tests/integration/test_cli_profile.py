"""`python -m memtrim`: the script behaves as without memtrim; bad input exits 2."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from memtrim.commands import main

SHOW = """
import sys, os
print("argv", sys.argv)
print("name", __name__, "file", os.path.basename(__file__))
print("path0", sys.path[0] == os.path.dirname(os.path.realpath(__file__)))
print("main", sys.modules["__main__"].__dict__ is globals())
print("stdin", sys.stdin.read().strip())
print("to stderr", file=sys.stderr)
"""


def test_script_sees_the_same_world_as_under_python(runner):
    script = runner.write(SHOW)
    plain = runner.python(str(script), "a", "--b", stdin="hello")
    profiled = runner.memtrim(str(script), "a", "--b", stdin="hello")
    assert profiled.returncode == plain.returncode == 0
    assert profiled.stdout == plain.stdout
    assert profiled.stderr == plain.stderr
    assert "argv ['" in plain.stdout and "'a', '--b']" in plain.stdout


@pytest.mark.parametrize(
    "ending",
    [
        "sys.exit(3)",
        "sys.exit('bye')",
        "raise SystemExit",
        "raise KeyError('k')",
        "raise ValueError('v') from OSError('cause')",
        "os._exit(7)",
    ],
)
def test_exit_status_and_errors_are_the_scripts(runner, ending):
    script = runner.write(
        f"""
        import os, sys
        def helper():
            {ending}
        print("before")
        helper()
        """
    )
    plain = runner.python(str(script))
    profiled = runner.memtrim(str(script))
    assert profiled.returncode == plain.returncode
    assert profiled.stderr == plain.stderr
    assert profiled.stdout.startswith(plain.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_keyboard_interrupt_ends_like_python(runner):
    script = runner.write("raise KeyboardInterrupt\n")
    plain = runner.python(str(script))
    profiled = runner.memtrim(str(script))
    assert plain.returncode == profiled.returncode == -signal.SIGINT
    assert profiled.stderr == plain.stderr


def test_tables_are_printed_even_when_the_script_fails(runner):
    script = runner.write(
        """
        @profile
        def f():
            a = bytearray(10**6)
            return a
        keep = f()
        raise SystemExit(5)
        """
    )
    out = runner.tmp_path / "t.json"
    proc = runner.memtrim("--json", str(out), str(script))
    assert proc.returncode == 5
    assert "bytearray(10**6)" in proc.stdout
    assert json.loads(out.read_text())["functions"][0]["function"] == "f"


def test_output_file_and_precision(runner):
    script = runner.write(
        """
        @profile
        def f():
            return bytearray(2**20)
        keep = f()
        """
    )
    out = runner.tmp_path / "table.txt"
    proc = runner.memtrim("-o", str(out), "--precision", "1", str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "    1.0 MiB" in out.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.py"], "memtrim: no such file: missing.py"),
        (["."], "memtrim: . is a directory, not a Python script"),
        (["bad.py"], "memtrim: cannot compile bad.py: "),
        (["-f", "nope", "good.py"], "memtrim: no function named 'nope' in good.py"),
        (["-f", "good.py"], "memtrim: the following arguments are required: script\n"),
        (["--precision", "-1", "good.py"], "memtrim: argument --precision: invalid precision"),
        (["--precision", "x", "good.py"], "memtrim: argument --precision: invalid precision"),
        (["--json", "nodir/x.json", "good.py"], "memtrim: cannot write nodir/x.json"),
        ([], "memtrim: "),
    ],
)
def test_bad_input_is_one_line_and_status_2(runner, args, message):
    runner.write("def x(:\n", "bad.py")
    runner.write("def g():\n    return 1\n", "good.py")
    proc = runner.memtrim(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(message)
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_main_in_process_parses_and_reports_errors(capsys, tmp_path):
    assert main(["profile", str(tmp_path / "none.py")]) == 2
    assert capsys.readouterr().err == f"memtrim: no such file: {tmp_path / 'none.py'}\n"
    assert main(["--help"]) == 0
    assert "profile" in capsys.readouterr().out


def _on_a_terminal(runner, *args):
    """Run ``python -m memtrim ARGS`` with stderr on a pseudo-terminal; (rc, stdout, stderr)."""
    return _on_a_terminal_env(runner, {}, *args)


def _on_a_terminal_env(runner, env, *args):
    """:func:`_on_a_terminal` with more environment variables."""
    import os
    import pty
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    main, other = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "memtrim", *args],
        stdout=subprocess.PIPE,
        stderr=other,
        cwd=runner.tmp_path,
        env=subprocess_env(**env),
    )
    os.close(other)
    out = proc.stdout.read().decode()
    err = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        err += chunk
    os.close(main)
    return proc.wait(timeout=60), out, err.decode().replace("\r\n", "\n")


def test_no_profiled_function_says_so_and_how_to_choose(runner):
    script = runner.write("x = [0] * 1000\nprint('done')\n")
    rc, out, err = _on_a_terminal(runner, str(script))
    assert rc == 0 and out == "done\n"
    flat = " ".join(err.split())
    assert "no function was profiled" in flat
    assert "-f NAME" in flat and "memtrim run" in flat
    piped = runner.python("-m", "memtrim", str(script))  # in a log: the program's output only
    assert piped.stdout == "done\n" and piped.stderr == ""


def test_profiled_functions_that_never_ran_say_so(runner):
    script = runner.write("def g():\n    return [0] * 10\n")
    rc, _, err = _on_a_terminal(runner, "-f", "g", str(script))
    assert rc == 0, err
    assert "the profiled functions never ran" in err


def test_a_table_means_no_such_message(runner):
    script = runner.write("@profile\ndef g():\n    return [0] * 10\ng()\n")
    rc, out, err = _on_a_terminal(runner, str(script))
    assert rc == 0, err
    assert "Line #" in out
    assert "never ran" not in err and "no function" not in err


def test_an_unwritable_output_is_one_line_and_status_2(runner):
    script = runner.write("@profile\ndef g():\n    return [0] * 10\ng()\nprint('ran')\n")
    proc = runner.python("-m", "memtrim", "-o", "/proc/self/no-such-file", str(script))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "/proc/self/no-such-file" in proc.stderr
    assert "ran" not in proc.stdout  # refused before the program runs: nothing lost
