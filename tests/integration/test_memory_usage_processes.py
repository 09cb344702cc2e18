"""memory_usage() of other processes and children; bad input; no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import memtrim
from tests.conftest import subprocess_env

MIB = 2**20
HOLD = "import sys, time; data = bytearray({mib} * 2**20); time.sleep({seconds})"


def child(mib: int, seconds: float) -> list[str]:
    return [sys.executable, "-c", HOLD.format(mib=mib, seconds=seconds)]


def run_child(mib: int, seconds: float) -> None:
    subprocess.run(child(mib, seconds), check=True)


@pytest.fixture(autouse=True)
def no_orphans():
    yield
    left = psutil.Process().children(recursive=True)
    for proc in left:
        proc.kill()
    assert not left, f"child processes left behind: {left}"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_include_children_adds_them_at_the_same_instants():
    alone = memtrim.memory_usage((run_child, (100, 0.6)), interval=0.05)
    total = memtrim.memory_usage((run_child, (100, 0.6)), interval=0.05, include_children=True)
    assert max(alone) - alone[0] < 50  # the child's memory is not ours
    assert (max(total) - total[0]) >= 100  # its 100 MiB (and its interpreter) are added


def test_multiprocess_gives_one_series_per_child():
    usage = memtrim.memory_usage((run_child, (60, 0.5)), interval=0.05, multiprocess=True)
    assert all(isinstance(entry, list) for entry in usage)
    with_child = [entry for entry in usage if len(entry) == 2]
    assert with_child and max(entry[1] for entry in with_child) >= 60


def test_a_command_is_started_and_watched_to_its_end():
    usage = memtrim.memory_usage(child(80, 0.5), interval=0.05)
    assert max(usage) >= 80
    assert len(usage) >= 5
    assert memtrim.memory_usage(f"{sys.executable} -c pass") is not None


def test_a_popen_is_watched_until_it_ends():
    proc = subprocess.Popen(child(40, 0.4))
    usage = memtrim.memory_usage(proc, interval=0.05)
    assert proc.returncode == 0
    assert max(usage) >= 40


def test_max_usage_of_a_command():
    peak = memtrim.memory_usage(child(120, 0.3), interval=0.05, max_usage=True)
    assert 120 <= peak < 200


def test_a_pid_with_timeout_gets_that_many_samples():
    proc = subprocess.Popen(child(30, 5))
    try:
        usage = memtrim.memory_usage(proc.pid, interval=0.05, timeout=0.3)
        assert len(usage) == 6
    finally:
        proc.kill()
        proc.wait()


def test_timeout_ends_a_command_we_started():
    usage = memtrim.memory_usage(child(1, 30), interval=0.05, timeout=0.3)
    assert usage  # and no_orphans checks it was ended and reaped


@pytest.mark.parametrize("interval", [0, -0.1, float("nan")])
def test_bad_interval(interval):
    with pytest.raises(ValueError, match="interval"):
        memtrim.memory_usage(-1, interval=interval)


def test_bad_timeout():
    with pytest.raises(ValueError, match="timeout"):
        memtrim.memory_usage(-1, timeout=0)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        memtrim.memory_usage(-1, backend="nope")


def test_missing_pid():
    with pytest.raises(ValueError, match="no process with PID"):
        memtrim.memory_usage(dead_pid())


@pytest.mark.skipif(os.geteuid() == 0, reason="root may read every process")
def test_a_pid_that_is_not_ours():
    with pytest.raises(ValueError, match="not allowed"):
        memtrim.memory_usage(1, backend="uss")


@pytest.mark.parametrize("command", ["/no/such/program --x", ["/no/such/program"], ""])
def test_a_command_that_cannot_start(command):
    with pytest.raises(ValueError, match=r"cannot start|empty"):
        memtrim.memory_usage(command)


@pytest.mark.parametrize("proc", [1.5, None, [], (len, 1, 2, 3)])
def test_bad_proc(proc):
    with pytest.raises((ValueError, TypeError)):
        memtrim.memory_usage(proc)


def test_an_exception_in_the_callable_propagates_and_stops_sampling():
    def fail():
        raise OSError("boom")

    threads = psutil.Process().num_threads()  # the sampler is a native thread
    with pytest.raises(OSError, match="boom"):
        memtrim.memory_usage(fail, interval=0.01)
    assert psutil.Process().num_threads() == threads


# ------------------------------------------------------------- PIDs without memory


def test_a_zombie_is_refused():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for options in ({}, {"max_usage": True}, {"timeout": 0.2}):
            with pytest.raises(ValueError, match=f"process {proc.pid} has exited .*zombie"):
                memtrim.memory_usage(proc.pid, **options)
        with pytest.raises(ValueError, match="already exited"):
            memtrim.memory_usage(proc)  # not reaped yet
    finally:
        proc.wait()
    with pytest.raises(ValueError, match="already exited"):
        memtrim.memory_usage(proc, max_usage=True)  # reaped


def kernel_thread() -> int | None:
    for pid in (2, 3):
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                flags = int(handle.read().rsplit(b")", 1)[1].split()[6])
        except (OSError, IndexError, ValueError):
            continue
        if flags & 0x00200000:  # PF_KTHREAD
            return pid
    return None


def test_a_kernel_thread_is_refused():
    pid = kernel_thread()
    if pid is None:
        pytest.skip("no kernel thread visible here")
    for options in ({}, {"max_usage": True}):
        with pytest.raises(ValueError, match=f"process {pid} is a kernel thread"):
            memtrim.memory_usage(pid, **options)


# ------------------------------------------------------------- children


def spawn(*args: object) -> subprocess.Popen[bytes]:
    code = (
        "import sys, time; time.sleep(float(sys.argv[1])); "
        "x = bytearray(int(sys.argv[2]) * 2**20); time.sleep(float(sys.argv[3])); "
        "del x; time.sleep(float(sys.argv[4]))"
    )
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)])


def test_multiprocess_columns_follow_their_child():
    started = []

    def two_children():
        started.append(spawn(0, 40, 0.5, 0))  # 40 MiB until ~0.55 s, then exits
        time.sleep(0.3)
        started.append(spawn(0, 80, 0.7, 0))  # 80 MiB from ~0.35 to ~1.05 s
        for proc in started:
            proc.wait()

    usage = memtrim.memory_usage(two_children, interval=0.05, multiprocess=True)
    first, second = (proc.pid for proc in started)
    assert usage.pids[0] == os.getpid() and set(usage.pids[1:]) >= {first, second}
    a, b = usage.pids.index(first), usage.pids.index(second)
    assert all(len(row) == len(usage.pids) for row in usage)
    seen_a = [row[a] for row in usage]
    seen_b = [row[b] for row in usage]
    assert 40 <= max(seen_a) < 60 and 80 <= max(seen_b) < 100
    # after the first child exits its column is 0.0, and the second's still holds it
    gone = max(i for i, value in enumerate(seen_a) if value > 0) + 1
    assert seen_a[gone:] == [0.0] * (len(usage) - gone)
    assert any(seen_b[i] >= 80 for i in range(gone, len(usage)))


def test_the_combined_peak_is_of_the_same_instants():
    # Both children live throughout; A holds 100 MiB early, B 150 MiB later. The sum of
    # their separate peaks never happened; the combined peak is what did.
    def peaks_at_different_times():
        procs = [spawn(0.1, 100, 0.4, 1.2), spawn(0.9, 150, 0.4, 0.3)]
        for proc in procs:
            proc.wait()

    rows = memtrim.memory_usage(
        peaks_at_different_times, interval=0.05, include_children=True, multiprocess=True
    )
    assert len(rows.pids) == 3
    totals = [row[0] for row in rows]
    quiet = [row[0] for row in rows if len(row) == 3 and 0 < row[1] < 40 and 0 < row[2] < 40]
    assert quiet, "no sample with both children idle"
    expected = min(quiet) + 150  # both idle interpreters, the parent, and B's 150 MiB
    own = max(r[0] - r[1] - r[2] for r in rows)
    separate = max(r[1] for r in rows) + max(r[2] for r in rows) + own
    assert abs(max(totals) - expected) <= 0.03 * 150
    assert max(totals) < separate - 90
    peak = memtrim.memory_usage(
        peaks_at_different_times, interval=0.05, include_children=True, max_usage=True
    )
    assert abs(peak - expected) <= 0.03 * 150


def test_max_usage_with_children_catches_a_childs_5_ms_spike():
    parent = memtrim.memory_usage(-1)[0]

    def spike():
        spawn(0.3, 200, 0.005, 0.4).wait()

    peak = memtrim.memory_usage(spike, interval=0.2, include_children=True, max_usage=True)
    # the spike, the parent and the child's interpreter (a few MiB): no less, not much more
    assert parent + 0.98 * 200 <= peak < parent + 200 + 40


def test_max_usage_of_a_command_catches_a_grandchilds_spike():
    code = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; "
        "time.sleep(0.3); x = bytearray(200 * 2**20); time.sleep(0.005); del x; "
        "time.sleep(0.4)'])"
    )
    command = [sys.executable, "-c", code]
    peak = memtrim.memory_usage(command, interval=0.2, include_children=True, max_usage=True)
    assert 0.98 * 200 <= peak < 200 + 60


# ------------------------------------------------------------- no orphans


def left_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or ()) and proc.pid != os.getpid():
            found.append(proc)
    return found


def wait_none_left(marker: str, why: str = "") -> None:
    deadline = time.monotonic() + 10
    while left_with(marker):
        if time.monotonic() > deadline:
            left = [proc.pid for proc in left_with(marker)]
            for proc in left_with(marker):
                proc.kill()
            pytest.fail(f"processes left behind: {marker} {left}\n{why}")
        time.sleep(0.05)


def grandparent(marker: str) -> list[str]:
    inner = f"import time; time.sleep(60)  # {marker}"
    code = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {inner!r}]); "
        "time.sleep(60)"
    )
    return [sys.executable, "-c", code]


def test_a_timeout_ends_the_commands_children_too():
    marker = f"memtrim-orphan-{os.getpid()}-timeout"
    started = time.monotonic()
    usage = memtrim.memory_usage(grandparent(marker), interval=0.05, timeout=0.8)
    assert usage and time.monotonic() - started < 10
    wait_none_left(marker)


def test_an_interrupted_watch_ends_the_command_and_its_children(runner):
    marker = f"memtrim-orphan-{os.getpid()}-interrupt"
    script = runner.write(
        f"import memtrim\nmemtrim.memory_usage({grandparent(marker)!r}, interval=0.05)\n"
    )
    err = script.with_name("stderr.txt")
    with open(err, "wb") as sink:  # -X faulthandler: where it hangs, if it does (SIGABRT)
        argv = [sys.executable, "-X", "faulthandler", str(script)]
        proc = subprocess.Popen(argv, env=subprocess_env(), stderr=sink)
    try:
        deadline = time.monotonic() + 20
        while len(left_with(marker)) < 2:  # the command and its child run
            assert time.monotonic() < deadline and proc.poll() is None, err.read_text()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=20) != 0, err.read_text()  # KeyboardInterrupt
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait()
            pytest.fail(f"still running 20 s after SIGINT:\n{err.read_text()}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_none_left(marker, err.read_text())
