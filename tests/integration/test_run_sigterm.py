"""`memtrim run`: SIGTERM during a long C call ends the program as promptly as without
memtrim, and leaves a capture (issue 16).

Without memtrim SIGTERM's default action ends the process at once; memtrim's Python
handler could only run when the C call returns (a 30 s regex: 30 s late, and a
container's SIGKILL after its grace period). Now a native thread ends the process
``TERM_GRACE`` seconds after the signal unless memtrim's Python side took it; when the
C call has released the GIL, memtrim's watcher thread writes the capture first.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from memtrim.run import capture as capture_file
from memtrim.run.lifecycle import TERM_GRACE
from memtrim.run.render.summary import partial_note
from tests.conftest import subprocess_env

MIB = 2**20
BYTEARRAY = 56 + 1

# A C call that holds the GIL for ever and never checks for signals (re does).
HOLDS_GIL = """\
import time; data = None  # the globals' growth is line 1's
data = bytearray(40 * 2**20)  # BIG
time.sleep(1.5)  # memtrim's keeper writes the capture of the peak meanwhile
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


def test_with_the_gil_held_the_capture_kept_on_disk_remains(runner):
    # 40 MiB is past the keeper's first write: the capture of the peak is on disk
    status, _ = _terminate(runner, HOLDS_GIL, *RUN)
    assert status == -signal.SIGTERM
    capture = capture_file.read(str(runner.tmp_path / "out.memtrim"))
    assert capture.meta["partial"]["reason"] == "the peak grew"
    assert _big_line(capture) == 40 * MIB + BYTEARRAY


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
