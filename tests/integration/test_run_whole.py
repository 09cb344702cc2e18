"""`memtrim run`: totals that are sums of their parts, and a profile that survives SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from memtrim.run import capture as capture_file
from memtrim.run.capture import VIEWS, unattributed, view_total
from tests.conftest import subprocess_env

MIB = 2**20


def _view_whole(capture, view):
    return view_total(capture, view)


def test_a_tiny_program_s_totals_are_the_sums_of_its_lines(runner):
    script = runner.write('print("hi")\n')
    cap = runner.tmp_path / "out.memtrim"
    proc = runner.memtrim("run", "-q", "-o", str(cap), str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi\n"
    capture = capture_file.read(str(cap))
    # memtrim's own bookkeeping is never counted: the peak is what the lines
    # (and the blocks no line can be charged with) held at the peak
    assert capture.peak_bytes == _view_whole(capture, "peak")
    assert capture.end_bytes == _view_whole(capture, "at_exit")
    assert capture.peak_bytes <= _view_whole(capture, "allocated")
    assert all(u.bytes >= 0 for view in VIEWS for u in unattributed(capture, view))
    # a timeline from the start to the end, with the RSS read at both
    assert len(capture.timeline) >= 2
    assert capture.timeline[0][:2] == (0.0, 0)
    assert all(rss > 0 for _, _, rss in capture.timeline)


def test_a_program_that_collects_garbage_gets_a_whole_capture(runner):
    # a collection in the program freed memtrim's own garbage from before the
    # recording: the level ended below the start, and the capture said -N bytes
    # at exit, which memtrim report then refused as corrupt
    script = runner.write("import gc\ngc.collect()\nkeep = bytearray(5000)\ngc.collect()\n")
    cap = runner.tmp_path / "out.memtrim"
    proc = runner.memtrim("run", "-q", "-o", str(cap), str(script))
    assert proc.returncode == 0, proc.stderr
    capture = capture_file.read(str(cap))
    assert capture.end_bytes == _view_whole(capture, "at_exit") >= 5000 + 56 + 1
    assert capture.peak_bytes == _view_whole(capture, "peak")


HOLD = """
import time, sys
data = bytearray(100 * 2**20)  # HOLD
print("holding", flush=True)
time.sleep(float(sys.argv[1]))
"""


def _start(runner, *options, env=None, hold="30"):
    script = runner.write(HOLD)
    cap = runner.tmp_path / "out.memtrim"
    argv = [
        sys.executable,
        "-m",
        "memtrim",
        "run",
        "-q",
        "-o",
        str(cap),
        *options,
        str(script),
        hold,
    ]
    proc = subprocess.Popen(
        argv,
        cwd=runner.tmp_path,
        env=subprocess_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "holding\n"
    return proc, cap


def _wait_for(path, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists():
            return True
        time.sleep(0.05)
    return False


def test_a_program_killed_with_sigkill_leaves_the_profile_of_its_peak(runner):
    proc, cap = _start(runner)
    try:
        assert _wait_for(cap), "no capture on disk while the program ran"
        time.sleep(0.3)  # the file is replaced atomically: any moment is a whole file
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    capture = capture_file.read(str(cap))
    assert capture.meta["partial"]["reason"] == "the peak grew"
    report = subprocess.run(
        [sys.executable, "-m", "memtrim", "report", str(cap), "--json", "r.json"],
        cwd=runner.tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    line = json.loads((runner.tmp_path / "r.json").read_text())["peak"]["sites"][0]
    assert line["lineno"] == 3 and line["bytes"] >= 100 * MIB  # the HOLD line, exact
    shown = subprocess.run(
        [sys.executable, "-m", "memtrim", "report", str(cap)],
        cwd=runner.tmp_path,
        env=subprocess_env(COLUMNS="200"),
        capture_output=True,
        text=True,
    )
    assert "did not finish under memtrim" in shown.stdout


def test_near_its_memory_limit_the_profile_is_written_at_once(runner):
    # a limit just above what the program holds: the keeper writes without waiting
    proc, cap = _start(runner, env={"MEMTRIM_MEMORY_LIMIT": str(130 * MIB)})
    try:
        assert _wait_for(cap)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    partial = capture_file.read(str(cap)).meta["partial"]
    assert partial["reason"] == "near the memory limit"
    assert "MEMTRIM_MEMORY_LIMIT" in partial["limit"]


def test_a_program_that_ends_replaces_the_kept_capture(runner):
    proc, cap = _start(runner, hold="1.5")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    capture = capture_file.read(str(cap))
    assert "partial" not in capture.meta
    assert capture.meta.get("kept_on_disk", 0) >= 1
    assert os.path.getsize(cap) > 0


def test_json_sites_and_report_counts(runner):
    script = runner.write("a = [bytearray(100 + i) for i in range(5)]\nb = [0] * 1000\n")
    cap, out = runner.tmp_path / "o.memtrim", runner.tmp_path / "o.json"
    proc = runner.memtrim(
        "run", "-q", "-o", str(cap), "--json", str(out), "--json-sites", "1", str(script)
    )
    assert proc.returncode == 0, proc.stderr
    allocated = json.loads(out.read_text())["allocated"]
    assert len(allocated["sites"]) == 1 and allocated["sites_cut"] == allocated["sites_total"] - 1
    for bad in ("0", "-3", "x"):
        proc = runner.memtrim("report", str(cap), "--top", bad)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    proc = runner.memtrim("report", str(cap), "--json-sites", "-1", "--json", "x.json")
    assert proc.returncode == 2 and "must be >= 0" in proc.stderr


def test_slow_steps_are_named_on_a_terminal(runner):
    from tests.integration.test_cli_profile import _on_a_terminal_env

    script = runner.write("keep = [bytearray(64) for _ in range(1000)]\nprint('done')\n")
    rc, out, err = _on_a_terminal_env(
        runner, {"MEMTRIM_PROGRESS_DELAY": "0"}, "run", "-o", "o.memtrim", str(script)
    )
    assert rc == 0 and out == "done\n", err
    # a spinner line naming a step (which one the display catches depends on timing)
    assert re.search(r"memtrim: (building the capture|writing the capture and reports)…", err)
    assert "\r\x1b[2K" in err  # cleared before the summary
    assert "wrote o.memtrim" in err


POOL = """
import multiprocessing as mp, sys, time

def work(n):
    data = bytearray(50 * 2**20)
    time.sleep(0.8)
    return len(data)

if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(2) as pool:
        print(sum(pool.map(work, range(2))))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_children_that_ran_unprofiled_are_counted_with_their_memory(runner, method):
    script = runner.write(POOL)
    cap = runner.tmp_path / "out.memtrim"
    proc = runner.memtrim("run", "-o", str(cap), str(script), method)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{2 * 50 * MIB}\n"
    children = capture_file.read(str(cap)).meta["children"]
    assert children["count"] >= 2
    assert children["peak_rss_each"] >= 50 * MIB  # each worker held its 50 MiB
    assert children["peak_rss_together"] >= 2 * 50 * MIB
    said = " ".join(proc.stderr.split())
    assert "child processes ran" in said and "--follow-fork" in said
