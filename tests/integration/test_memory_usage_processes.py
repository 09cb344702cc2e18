"""memory_usage() of other processes and children; bad input; no orphans."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

import memtrim

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
