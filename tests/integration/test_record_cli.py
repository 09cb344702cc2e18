"""`memtrim record` and `memtrim plot`: parsing in process, end to end in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from memtrim.commands import main
from memtrim.timeline.model import Sample, Timeline
from memtrim.timeline.recording import dumps, load
from tests.conftest import subprocess_env

MIB = 2**20

SCRIPT = """\
import sys
import memtrim

print("argv", sys.argv, __name__)
print("to stderr", file=sys.stderr)
with memtrim.phase("load"):
    data = bytearray(40 * 2**20)
memtrim.phase("drop")
del data
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def one_line_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("memtrim: ")
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["record"], "give a script to run or --pid PID"),
        (["record", "--interval", "0", "x.py"], "invalid interval '0'"),
        (["record", "--interval", "-1", "x.py"], "invalid interval"),
        (["record", "--interval", "soon", "x.py"], "invalid interval 'soon'"),
        (["record", "--pid", "abc"], "invalid PID 'abc'"),
        (["record", "--pid", "0"], "invalid PID '0'"),
        (["record", "--pid", "12", "x.py"], "one of them"),
        (["record", "no_such_script.py"], "no such file"),
        (["plot", "no_such.mtrec"], "cannot read no_such.mtrec"),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, argv, message)


def test_record_refuses_a_pid_that_does_not_exist(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    one_line_error(capsys, ["record", "--pid", str(proc.pid)], "no process with PID")


def test_plot_bad_files(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, ["plot"], "no recording in")
    (tmp_path / "memtrim_1.mtrec").write_text("memtrim-timeline 1\n{}")
    one_line_error(capsys, ["plot"], "truncated")
    (tmp_path / "bad.mtrec").write_text("memtrim-timeline 9\n")
    one_line_error(capsys, ["plot", "bad.mtrec"], "newer than this memtrim reads")
    good = tmp_path / "good.mtrec"
    good.write_text(dumps(Timeline(samples=(Sample(0.0, MIB),))))
    one_line_error(capsys, ["plot", str(good), "-o", "x.pdf"], "name it .png, .svg or .html")
    (tmp_path / "taken.png").write_text("")
    one_line_error(capsys, ["plot", str(good), "-o", "taken.png"], "use --force")


def test_the_program_behaves_as_without_memtrim(runner):
    script = runner.write(SCRIPT)
    plain = runner.python(str(script), "3", "x y")
    recorded = runner.memtrim("record", "-o", "out.mtrec", str(script), "3", "x y")
    assert recorded.returncode == plain.returncode == 3
    assert recorded.stdout == plain.stdout
    assert recorded.stdout.startswith("argv ['" + str(script) + "', '3', 'x y'] __main__")
    ours = recorded.stderr.splitlines()
    assert ours[:-1] == plain.stderr.splitlines()
    assert ours[-1].startswith("memtrim: ") and ours[-1].endswith("recorded to out.mtrec")
    quiet = runner.memtrim("record", "-q", "-o", "q.mtrec", str(script))
    assert (quiet.returncode, quiet.stderr) == (0, plain.stderr)


def test_an_uncaught_exception_is_reported_like_python(runner):
    script = runner.write("import sys\nprint('hi')\n1 / 0\n")
    plain = runner.python(str(script))
    recorded = runner.memtrim("record", "-q", "-o", "out.mtrec", str(script))
    assert recorded.returncode == plain.returncode == 1
    assert recorded.stderr == plain.stderr
    assert load(str(runner.tmp_path / "out.mtrec")).exit_code == 1


def test_the_recording_holds_samples_phases_and_exact_peaks(runner):
    script = runner.write(SCRIPT)
    out = runner.tmp_path / "out.mtrec"
    proc = runner.memtrim("record", "-q", "--interval", "0.02", "-o", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    timeline = load(str(out))
    assert timeline.exit_code == 0 and timeline.interval == 0.02
    assert timeline.command == (str(script),)
    assert [p.name for p in timeline.phases] == ["load", "drop"]
    load_phase = timeline.phases[0]
    assert 40 * MIB <= load_phase.peak_heap < 40 * MIB + 1024
    assert load_phase.peak_rss >= 40 * MIB
    assert len(timeline.samples) >= 2 and timeline.has_heap
    assert timeline.peak_rss is not None
    assert timeline.peak_rss - timeline.samples[0].rss >= 0.98 * 40 * MIB


CHILD_SCRIPT = """\
import subprocess, sys
subprocess.run([sys.executable, "-c",
                "import time; data = bytearray(60 * 2**20); time.sleep(0.6)"], check=True)
"""


@pytest.mark.parametrize("flag", ["-C", "-M"])
def test_children_are_recorded(runner, flag):
    script = runner.write(CHILD_SCRIPT)
    out = runner.tmp_path / "out.mtrec"
    proc = runner.memtrim("record", "-q", flag, "--interval", "0.05", "-o", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    timeline = load(str(out))
    assert timeline.include_children == (flag == "-C")
    assert timeline.multiprocess == (flag == "-M")
    biggest = max(value for s in timeline.samples for _, value in s.children)
    assert biggest >= 60 * MIB


def test_no_heap_records_rss_only(runner):
    script = runner.write(SCRIPT)
    out = runner.tmp_path / "out.mtrec"
    proc = runner.memtrim("record", "-q", "--no-heap", "-o", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    timeline = load(str(out))
    assert not timeline.has_heap
    assert [p.peak_heap for p in timeline.phases] == [None, None]
    assert timeline.phases[0].peak_rss >= 40 * MIB


def test_record_pid_follows_a_process_to_its_end(runner):
    target = subprocess.Popen(
        [sys.executable, "-c", "import time; data = bytearray(50 * 2**20); time.sleep(1.0)"]
    )
    try:
        out = runner.tmp_path / "pid.mtrec"
        proc = runner.memtrim(
            "record", "--pid", str(target.pid), "--interval", "0.05", "-o", str(out)
        )
        assert proc.returncode == 0, proc.stderr
    finally:
        target.wait(timeout=30)
    timeline = load(str(out))
    assert timeline.pid == target.pid
    assert max(s.rss for s in timeline.samples) >= 50 * MIB
    assert not psutil.Process().children()


def test_plot_the_newest_recording(runner):
    pytest.importorskip("matplotlib")
    script = runner.write(SCRIPT)
    made = runner.memtrim("record", "-q", str(script))  # the default name
    assert made.returncode == 0, made.stderr
    (default,) = runner.tmp_path.glob("memtrim_*.mtrec")
    assert re.fullmatch(r"memtrim_\d{8}_\d{6}_\d+\.mtrec", default.name)
    older = runner.tmp_path / "memtrim_99999999_999999.mtrec"  # sorts last, is older
    older.write_bytes(default.read_bytes())
    os.utime(older, (1, 1))
    plotted = runner.memtrim("plot")
    assert plotted.returncode == 0, plotted.stderr
    assert default.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    assert not older.with_suffix(".png").exists()
    page = runner.memtrim("plot", "-o", "page.html")
    assert page.returncode == 0, page.stderr
    assert "<svg" in (runner.tmp_path / "page.html").read_text()


FORKER = """\
import os, sys, time
pid = os.fork()
if pid == 0:
    time.sleep(0.5)  # the child outlives the parent's end
    data = bytearray(5 * 2**20)
    print("child done", flush=True)
    sys.exit(7)
print("parent done", flush=True)
"""


def test_a_forked_child_ends_as_under_plain_python(runner):
    script = runner.write(FORKER)
    plain = runner.python(str(script))
    recorded = runner.memtrim("record", "-o", "out.mtrec", str(script))
    assert recorded.returncode == plain.returncode == 0
    assert recorded.stdout == plain.stdout == "parent done\nchild done\n"
    ours = [line for line in recorded.stderr.splitlines() if line.startswith("memtrim: ")]
    assert len(ours) == 1 and ours[0].endswith("recorded to out.mtrec")
    assert recorded.stderr.replace(ours[0] + "\n", "") == plain.stderr
    time.sleep(0.8)  # the child has finished (it held the pipes open until then)
    timeline = load(str(runner.tmp_path / "out.mtrec"))
    assert timeline.exit_code == 0 and timeline.pid != 0
    assert [p.name for p in runner.tmp_path.glob("*.mtrec")] == ["out.mtrec"]


@pytest.mark.parametrize(
    ("code", "status"), [("True", 1), ("False", 0), ("2**40", 0), ("2**40 + 3", 3), ("-1", 255)]
)
def test_the_recorded_exit_code_is_the_real_status(runner, code, status):
    script = runner.write(f"import sys\nsys.exit({code})\n")
    plain = runner.python(str(script))
    recorded = runner.memtrim("record", "-q", "-o", "out.mtrec", str(script))
    assert recorded.returncode == plain.returncode == status
    assert load(str(runner.tmp_path / "out.mtrec")).exit_code == status


KIDS = """\
import subprocess, sys, memtrim
memtrim.phase("alone")
with memtrim.phase("sub"):
    subprocess.run([sys.executable, "-c",
                    "import time; data = bytearray(80 * 2**20); time.sleep(0.5)"], check=True)
"""


@pytest.mark.parametrize("flag", ["-C", "-M"])
def test_with_children_phases_and_summary_give_both_peaks(runner, flag):
    script = runner.write(KIDS)
    out = runner.tmp_path / "out.mtrec"
    proc = runner.memtrim("record", flag, "--interval", "0.05", "-o", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    said = proc.stderr.splitlines()[-1]
    assert re.search(r"peak RSS [\d.]+ MiB \(own\), [\d.]+ MiB with children recorded", said)
    timeline = load(str(out))
    alone, sub = timeline.phases
    assert sub.peak_total - sub.peak_rss >= 80 * MIB  # the child's 80 MiB and its interpreter
    assert alone.peak_total - alone.peak_rss < 2 * MIB  # no child then
    assert timeline.peak_total >= sub.peak_total


def test_default_names_do_not_collide(runner):
    script = runner.write("import time\ntime.sleep(0.3)\n")
    command = [sys.executable, "-m", "memtrim", "record", "-q", str(script)]
    procs = [subprocess.Popen(command, cwd=runner.tmp_path, env=subprocess_env()) for _ in range(2)]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    names = sorted(p.name for p in runner.tmp_path.glob("memtrim_*.mtrec"))
    assert len(names) == 2, names


def test_an_existing_output_is_kept_unless_forced(runner):
    script = runner.write("pass\n")
    out = runner.tmp_path / "out.mtrec"
    out.write_text("mine")
    refused = runner.memtrim("record", "-o", str(out), str(script))
    assert refused.returncode == 2 and "exists: use --force" in refused.stderr
    assert out.read_text() == "mine"
    forced = runner.memtrim("record", "-q", "--force", "-o", str(out), str(script))
    assert forced.returncode == 0 and load(str(out)).exit_code == 0


def test_record_refuses_a_pid_without_memory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        one_line_error(capsys, ["record", "--pid", str(proc.pid)], "zombie")
    finally:
        proc.wait()
    kthreadd = Path("/proc/2/stat")
    if kthreadd.exists() and b"(kthreadd)" in kthreadd.read_bytes():
        one_line_error(capsys, ["record", "--pid", "2"], "process 2 is a kernel thread")
    assert not list(tmp_path.iterdir())


def test_record_pid_reports_the_higher_of_mark_and_samples(runner):
    target = subprocess.Popen(
        [sys.executable, "-c", "import time; data = bytearray(60 * 2**20); time.sleep(1.0)"]
    )
    try:
        out = runner.tmp_path / "pid.mtrec"
        proc = runner.memtrim(
            "record", "--pid", str(target.pid), "--interval", "0.05", "-o", str(out)
        )
        assert proc.returncode == 0, proc.stderr
    finally:
        target.wait(timeout=30)
    timeline = load(str(out))
    highest = max(s.rss for s in timeline.samples)
    assert timeline.peak_rss >= highest
    said = re.search(r"peak RSS ([\d.]+) MiB", proc.stderr).group(1)
    assert said == f"{timeline.peak_rss / MIB:.1f}"


def test_a_spike_between_samples_is_the_highest_sample_of_the_recording(runner, tmp_path):
    import memtrim

    script = runner.write(
        "import time\ntime.sleep(0.15)\nx = bytearray(200 * 2**20)\ndel x\ntime.sleep(0.15)\n"
    )
    out = tmp_path / "spike.mtrec"
    proc = runner.memtrim("record", "-o", str(out), "--interval", "0.1", str(script))
    assert proc.returncode == 0, proc.stderr
    timeline = memtrim.load(str(out))
    highest = max(s.rss for s in timeline.samples)
    assert highest == timeline.peak_rss  # the kernel's mark, put in at its time
    assert highest - timeline.samples[0].rss >= 200 * 2**20 * 0.98
    times = [s.time for s in timeline.samples]
    assert times == sorted(times)
