"""`memtrim run`: SIGTERM during a long C call ends the program as promptly as without
memtrim, and leaves a capture (issue 16).

Without memtrim SIGTERM's default action ends the process at once; memtrim's Python
handler could only run when the C call returns (a 30 s regex: 30 s late, and a
container's SIGKILL after its grace period). Now a native thread ends the process
``TERM_GRACE`` seconds after the signal unless memtrim's Python side took it; when the
C call has released the GIL, memtrim's watcher thread writes the capture first.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from memtrim.run import capture as capture_file
from memtrim.run import termdump
from memtrim.run.lifecycle import TERM_GRACE
from memtrim.run.render.summary import partial_note
from tests.conftest import subprocess_env

MIB = 2**20
BYTEARRAY = 56 + 1

# A C call that holds the GIL for ever and never checks for signals (re does).
HOLDS_GIL = """\
import threading; data = small = None  # the globals' growth is line 1's
data = bytearray(40 * 2**20)  # BIG
small = bytearray(1000)
go, done = threading.Event(), threading.Event()
def work():
    kept = bytearray(3 * 2**20)  # line 6: the worker's, alive at the signal
    done.set()
    go.wait()
worker = threading.Thread(target=work, name="worker-7", daemon=True)
worker.start(); done.wait()
print("ready", flush=True)
sum(range(10**15))
"""

# A C call that releases the GIL for a long time (OpenSSL's PBKDF2 loop).
RELEASES_GIL = """\
import hashlib; data = small = None  # the globals' growth is line 1's
data = bytearray(40 * 2**20)  # BIG
small = bytearray(1000)
print("ready", flush=True)
hashlib.pbkdf2_hmac("sha256", b"p", b"s", 10**9)
"""


def _terminate(runner, source, *prefix):
    """Start the program, SIGTERM it once it is in its C call; (status, seconds to die)."""
    script = runner.write(source, "prog.py")
    proc = subprocess.Popen(
        [sys.executable, *prefix, str(script)],
        cwd=runner.tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        time.sleep(0.5)  # in the C call now
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)  # before: only when the call returns (never, for HOLDS_GIL)
        return proc.returncode, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


RUN = ("-m", "memtrim", "run", "-q", "--force", "-o", "out.memtrim")


def _big_line(capture):
    return sum(
        site.bytes
        for site in capture_file.sites(capture, "peak")
        if site.frame.filename.endswith("prog.py") and site.frame.lineno == 2
    )


@pytest.mark.parametrize("source", [HOLDS_GIL, RELEASES_GIL], ids=["holds", "releases"])
def test_sigterm_in_a_long_c_call_ends_the_program_promptly(runner, source):
    plain, _ = _terminate(runner, source)
    status, seconds = _terminate(runner, source, *RUN)
    assert status == plain == -signal.SIGTERM
    assert seconds < TERM_GRACE + 10  # (a loaded machine); before: 30 s timeout


def _line(capture, view, lineno):
    return sum(
        site.bytes
        for site in capture_file.sites(capture, view)
        if site.frame.filename.endswith("prog.py") and site.frame.lineno == lineno
    )


@pytest.mark.parametrize("mode", [(), ("--exact",)], ids=["default", "exact"])
def test_with_the_gil_held_the_capture_is_written_at_the_signal(runner, mode):
    # No Python code can run: the engine dumps the call tree and execs memtrim on
    # it, in the same process, which writes the capture and dies of the signal.
    status, _ = _terminate(runner, HOLDS_GIL, *RUN, *mode)
    assert status == -signal.SIGTERM
    capture = capture_file.read(str(runner.tmp_path / "out.memtrim"))
    assert capture.meta["partial"]["reason"] == termdump.REASON
    assert capture.meta["exit"] == {"kind": "signal", "code": -signal.SIGTERM, "message": "SIGTERM"}
    assert capture.meta["exact"] is bool(mode)
    assert _big_line(capture) == 40 * MIB + BYTEARRAY
    assert _line(capture, "at_exit", 3) == 1000 + BYTEARRAY  # (after any keeper's write)
    assert _line(capture, "at_exit", 6) == 3 * MIB + BYTEARRAY
    assert "MainThread" in capture.threads and "worker-7" in capture.threads, capture.threads
    assert capture.peak_bytes >= 43 * MIB
    assert not list(runner.tmp_path.glob("out.memtrim.sigterm-*"))  # the dump is gone


RUN_REPORTS = (sys.executable, "-m", "memtrim", "run", "-o", "out.memtrim", "--html", "out.html")
RUN_REPORTS += ("--json", "out.json")


def test_with_the_gil_held_the_reports_and_summary_are_written(runner):
    script = runner.write(HOLDS_GIL, "prog.py")
    proc = subprocess.Popen(
        [*RUN_REPORTS, str(script)],
        cwd=runner.tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "ready\n"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    said = " ".join(err.split())  # (the summary wraps at the terminal's width)
    assert "SIGTERM during a long C call" in said, err
    assert re.search(r"\d+\.\d s after it came", said), err
    assert "40.0 MiB" in said
    assert "wrote out.memtrim" in err and "out.html" in err and "out.json" in err
    assert "Traceback" not in err
    report = json.loads((runner.tmp_path / "out.json").read_text())
    assert report["meta"]["partial"]["reason"] == termdump.REASON
    assert "prog.py" in (runner.tmp_path / "out.html").read_text()


def test_with_the_gil_released_the_capture_is_written_at_the_signal(runner):
    status, _ = _terminate(runner, RELEASES_GIL, *RUN)
    assert status == -signal.SIGTERM
    capture = capture_file.read(str(runner.tmp_path / "out.memtrim"))
    partial = capture.meta["partial"]
    assert partial["reason"] == "SIGTERM during a long C call"
    assert capture.meta["exit"] == {"kind": "signal", "code": -signal.SIGTERM, "message": "SIGTERM"}
    assert _big_line(capture) == 40 * MIB + BYTEARRAY
    # the line after it, written at the signal (the keeper's first write came before it)
    small = sum(
        site.bytes
        for site in capture_file.sites(capture, "at_exit")
        if site.frame.filename.endswith("prog.py") and site.frame.lineno == 3
    )
    assert small == 1000 + BYTEARRAY
    note = partial_note(capture.meta)
    assert note is not None and "SIGTERM" in note and "SIGKILL" not in note


# The API with a capture kept on disk and no command (so no SIGTERM dump): the disk
# keeper's thread writes the capture when the main thread's C call released the GIL.
API_RELEASES_GIL = """\
import hashlib
from memtrim import ProgramProfiler, ProgramRun
from memtrim.run import capture as capture_file
def keep(capture):
    with open("kept.memtrim", "wb") as file:
        file.write(capture_file.dumps(capture))
run = ProgramRun(ProgramProfiler(keep=keep), save=keep)
with run, run.recording():
    data = bytearray(40 * 2**20)
    print("ready", flush=True)
    hashlib.pbkdf2_hmac("sha256", b"p", b"s", 10**9)
"""


def test_through_the_api_the_disk_keeper_writes_the_capture_at_the_signal(runner):
    status, _ = _terminate(runner, API_RELEASES_GIL)
    assert status == -signal.SIGTERM
    capture = capture_file.read(str(runner.tmp_path / "kept.memtrim"))
    assert capture.meta["partial"]["reason"] == "SIGTERM during a long C call"
    assert capture.meta["exit"]["code"] == -signal.SIGTERM
    assert _line(capture, "at_exit", 9) == 40 * MIB + BYTEARRAY
