"""`memtrim run` and `memtrim report`: the program is untouched; faults still give a profile."""

from __future__ import annotations

import json
import signal
import struct

import pytest

from memtrim.run import capture as capture_file

MIB = 2**20

SHOW = """
import sys, os
print("argv", sys.argv)
print("name", __name__)
print("path0", sys.path[0])
print("stdin", sys.stdin.read().strip())
print("to stderr", file=sys.stderr)
"""


def run(runner, *args, **kwargs):
    cap = runner.tmp_path / "out.memtrim"
    return runner.memtrim("run", "-q", "--force", "-o", str(cap), *args, **kwargs), cap


def exit_of(cap):
    return capture_file.read(str(cap)).meta["exit"]


def test_script_behaves_as_under_python(runner):
    script = runner.write(SHOW)
    plain = runner.python(str(script), "a", "-x", stdin="in")
    proc, cap = run(runner, str(script), "a", "-x", stdin="in")
    assert proc.returncode == plain.returncode == 0
    assert proc.stdout == plain.stdout
    assert proc.stderr == plain.stderr
    assert cap.exists()


def test_module_and_code(runner):
    runner.write(SHOW, "showmod.py")
    plain = runner.python("-m", "showmod", "1", stdin="x")
    proc, _ = run(runner, "-m", "showmod", "1", stdin="x")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == plain.stdout
    plain = runner.python("-c", "import sys; print(sys.argv, __name__)", "z")
    proc, _ = run(runner, "-c", "import sys; print(sys.argv, __name__)", "z")
    assert proc.stdout == plain.stdout


@pytest.mark.parametrize(
    ("ending", "kind", "code"),
    [
        ("sys.exit(3)", "exit", 3),
        ("raise KeyError('k')", "exception", 1),
        ("os._exit(7)", "os._exit", 7),
        ("x = bytearray(2**62)", "oom", 1),
    ],
)
def test_the_profile_is_written_however_the_program_ends(runner, ending, kind, code):
    script = runner.write(f"import os, sys\nkeep = bytearray(10**6)\n{ending}\n")
    plain = runner.python(str(script))
    proc, cap = run(runner, str(script))
    assert proc.returncode == plain.returncode == code
    assert proc.stderr == plain.stderr
    info = exit_of(cap)
    assert info["kind"] == kind
    assert info["code"] == code


@pytest.mark.parametrize(
    ("signum", "kind"), [(signal.SIGTERM, "signal"), (signal.SIGINT, "signal")]
)
def test_signals_write_the_profile_then_end_the_process(runner, signum, kind):
    script = runner.write(
        f"import os, signal, time\nkeep = bytearray(10**6)\nos.kill(os.getpid(), {int(signum)})\n"
        "time.sleep(5)\n"
    )
    proc, cap = run(runner, str(script))
    assert proc.returncode == -signum
    assert exit_of(cap)["kind"] == kind


def test_limit_stops_the_program_with_a_report(runner):
    script = runner.write("hog = []\nwhile True:\n    hog.append(b'x' * (10 * 2**20))\n")
    proc, cap = run(
        runner, "--limit", "200M", "--json", str(runner.tmp_path / "r.json"), str(script)
    )
    assert proc.returncode == 1
    assert "MemoryError: memtrim: resident memory reached the --limit" in proc.stderr
    info = exit_of(cap)
    assert info["kind"] == "limit"
    data = json.loads((runner.tmp_path / "r.json").read_text())
    top = data["peak"]["sites"][0]
    assert top["lineno"] == 3
    assert top["bytes"] >= 100 * 2**20


def test_follow_fork_writes_one_capture_per_child(runner):
    script = runner.write(
        """
        import os
        pid = os.fork()
        if pid == 0:
            child = bytearray(5 * 2**20)
            os._exit(0)
        os.waitpid(pid, 0)
        parent = bytearray(2**20)
        """
    )
    cap = runner.tmp_path / "fork.memtrim"
    proc = runner.memtrim("run", "-q", "--follow-fork", "-o", str(cap), str(script))
    assert proc.returncode == 0, proc.stderr
    children = [p for p in runner.tmp_path.iterdir() if p.name.startswith("fork.") and p != cap]
    assert len(children) == 1
    child = capture_file.read(str(children[0]))
    assert child.meta["exit"] == {"kind": "os._exit", "code": 0}
    assert max(n.at_exit.bytes for n in child.nodes) >= 5 * 2**20
    parent = capture_file.read(str(cap))
    assert max(n.at_exit.bytes for n in parent.nodes) < 5 * 2**20


def test_without_follow_fork_children_write_nothing(runner):
    script = runner.write(
        "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n"
    )
    proc, cap = run(runner, str(script))
    assert proc.returncode == 0
    assert sorted(p.name for p in runner.tmp_path.iterdir() if p.suffix == ".memtrim") == [cap.name]


def test_summary_and_report(runner):
    script = runner.write("keep = [bytearray(10**6) for _ in range(3)]\n")
    cap = runner.tmp_path / "s.memtrim"
    proc = runner.memtrim("run", "-o", str(cap), str(script))
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert "Live at the peak, by line" in proc.stderr
    assert "keep = [bytearray(10**6)" in proc.stderr
    report = runner.memtrim("report", str(cap))
    assert report.returncode == 0
    assert "Still allocated at exit" in report.stdout
    out = runner.tmp_path / "r.json"
    assert runner.memtrim("report", str(cap), "--json", str(out)).returncode == 0
    data = json.loads(out.read_text())
    site = data["at_exit"]["sites"][0]
    assert set(site) >= {"filename", "function", "lineno", "bytes", "count", "stack"}
    assert isinstance(site["bytes"], int) and site["bytes"] >= 3 * 10**6
    assert isinstance(data["peak"]["bytes"], int) and isinstance(data["peak"]["time"], float)
    assert data["timeline"] and set(data["timeline"][0]) == {"time", "heap", "rss"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "truncated"),
        (b"hello world, not a capture", "not a memtrim capture"),
        ("truncate", "truncated"),
        ("corrupt", "corrupt"),
        ("newer", "format version 99"),
    ],
)
def test_report_rejects_bad_captures(runner, content, message):
    script = runner.write("x = 1\n")
    cap = runner.tmp_path / "c.memtrim"
    assert runner.memtrim("run", "-q", "-o", str(cap), str(script)).returncode == 0
    data = cap.read_bytes()
    if content == "truncate":
        data = data[: len(data) // 2]
    elif content == "corrupt":
        data = data[:40] + bytes(b ^ 0xFF for b in data[40:])
    elif content == "newer":
        data = data[:16] + struct.pack(">I", 99) + data[20:]
    else:
        data = content
    cap.write_bytes(data)
    proc = runner.memtrim("report", str(cap))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "give a script, -m module or -c code"),
        (["run", "missing.py"], "no such file: missing.py"),
        (["run", "-m", "no_such_module_xyz"], "no module named no_such_module_xyz"),
        (["run", "-c", "def ("], "cannot compile the -c code"),
        (["run", "-o", "nodir/x.memtrim", "ok.py"], "cannot write nodir/x.memtrim"),
        (["run", "--limit", "lots", "ok.py"], "invalid size"),
        (["run", "-o", "exists.memtrim", "ok.py"], "exists.memtrim exists"),
        (["report", "nothing.memtrim"], "no such capture file"),
        (["report", "."], "is a directory"),
    ],
)
def test_bad_input(runner, args, message):
    runner.write("x = 1\n", "ok.py")
    (runner.tmp_path / "exists.memtrim").write_bytes(b"x")
    proc = runner.memtrim(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def test_follow_fork_profiles_multiprocessing_pool_workers(runner):
    script = runner.write(
        """
        import multiprocessing as mp
        def work(n):
            data = bytearray(n * 2**20)
            return len(data)
        if __name__ == "__main__":
            with mp.get_context("fork").Pool(2) as pool:
                print(sum(pool.map(work, [3, 4, 5])))
        """
    )
    plain = runner.python(str(script))
    cap = runner.tmp_path / "pool.memtrim"
    proc = runner.memtrim("run", "-q", "--follow-fork", "-o", str(cap), str(script))
    assert proc.returncode == plain.returncode == 0
    assert proc.stdout == plain.stdout
    assert proc.stderr == plain.stderr  # no worker tracebacks
    workers = [p for p in runner.tmp_path.glob("pool.*.memtrim")]
    assert len(workers) == 2
    allocated = sum(
        node.allocated.bytes for path in workers for node in capture_file.read(str(path)).nodes
    )
    assert allocated >= 12 * 2**20


@pytest.mark.parametrize("command", ["run", "record"])
def test_dash_f_says_what_was_meant(runner, command):
    script = runner.write("print('never runs')\n", "app.py")
    proc = runner.memtrim(command, "-f", "build_cache", str(script))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"memtrim: memtrim {command} has no -f: to overwrite files use --force; to profile a "
        f"function line by line use: memtrim profile -f build_cache {script}\n"
    )


def test_existing_reports_are_kept_without_force(runner):
    script = runner.write("x = bytearray(1000)\n")
    (runner.tmp_path / "r.html").write_text("keep me")
    cap = runner.tmp_path / "c.memtrim"
    proc = runner.memtrim("run", "-q", "-o", str(cap), "--html", "r.html", str(script))
    assert proc.returncode == 2 and "r.html exists: use --force to overwrite it" in proc.stderr
    assert not cap.exists() and (runner.tmp_path / "r.html").read_text() == "keep me"
    forced = runner.memtrim("run", "-q", "--force", "-o", str(cap), "--html", "r.html", str(script))
    assert forced.returncode == 0, forced.stderr
    report = runner.memtrim("report", str(cap), "--html", "r.html")
    assert report.returncode == 2 and "r.html exists: use --force" in report.stderr
    again = runner.memtrim("report", str(cap), "--html", "r.html", "--force")
    assert again.returncode == 0, again.stderr


def test_follow_fork_adds_the_processes_up_at_the_same_moment(runner):
    # two children alive together, 30 MiB each on top of the parent's 5 MiB
    # (which they share with it until written: not theirs)
    script = runner.write(
        """
        import os, time
        parent = bytearray(5 * 2**20)
        pids = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                child = bytearray(30 * 2**20)
                time.sleep(1.0)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        """
    )
    cap = runner.tmp_path / "fork.memtrim"
    out = runner.tmp_path / "r.json"
    proc = runner.memtrim("run", "--follow-fork", "-o", str(cap), "--json", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    together = capture_file.read(str(cap)).meta["processes"]
    assert together["count"] == 2
    parts = together["at_peak"]
    assert [part["file"] != "" for part in parts] == [True, True, False]  # largest first
    # a child's own: what it allocated less what it freed of its parent's blocks
    assert all(abs(part["heap"] - 30 * MIB) < 64 * 1024 for part in parts[:2])
    assert abs(parts[2]["heap"] - 5 * MIB) < 64 * 1024
    assert together["peak"] == sum(part["heap"] for part in parts)
    assert {part["file"] for part in parts[:2]} == {
        p.name for p in runner.tmp_path.glob("fork.*.memtrim")
    }
    assert json.loads(out.read_text())["meta"]["processes"] == together
    said = " ".join(proc.stderr.split())
    assert "this process and its 2 forked children together" in said
