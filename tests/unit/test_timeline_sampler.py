"""The sampler's raw data, its bad input, the psutil fallback and the kernel's peak."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings

import pytest

from memtrim.engine import procfs, sampler
from memtrim.engine.sampler import Sampler

MIB = 2**20


def check_raw(raw, marks=False):
    t_ns, heap, procs, read = raw
    assert isinstance(t_ns, int) and t_ns > 0
    assert heap is None or isinstance(heap, int)
    assert procs[0][0] == os.getpid() and procs[0][1] > MIB
    if marks and sampler.NATIVE:
        (pid, hwm, reset_ns), *_ = read
        assert pid == os.getpid() and hwm >= procs[0][1] and reset_ns == 0  # never our own
    elif not marks:
        assert read is None


@pytest.fixture(params=["native", "psutil"])
def backend(request, monkeypatch):
    if request.param == "native" and not sampler.NATIVE:
        pytest.skip("no native sampler on this system")
    monkeypatch.setattr(sampler, "NATIVE", request.param == "native")
    return request.param


def test_samples_are_plain_tuples(backend):
    with Sampler(os.getpid(), 0.001) as running:
        first = running.sample_now()
        for _ in range(100_000):  # bounded: a broken sampler fails, it does not hang
            if running.count >= 3:
                break
            time.sleep(0.0005)
    taken = running.drain()
    assert len(taken) == running.count >= 3
    for raw in [first, *taken]:
        check_raw(raw)
    assert running.drain() == []  # drained
    assert [raw[0] for raw in taken] == sorted(raw[0] for raw in taken)


def test_heap_level_is_read_when_asked(backend):
    from memtrim.engine import hooks

    with hooks.installed():
        raw = Sampler(os.getpid(), 1.0, heap=True).sample_now()
    assert isinstance(raw[1], int)
    assert Sampler(os.getpid(), 1.0).sample_now()[1] is None


@pytest.mark.parametrize("metric", ["pss", "uss"])
def test_other_metrics(backend, metric):
    raw = Sampler(os.getpid(), 1.0, metric=metric).sample_now()
    check_raw(raw)


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric"):
        Sampler(os.getpid(), 1.0, metric="vms")


@pytest.mark.skipif(not sampler.NATIVE, reason="native sampler only")
@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), 10**6])
def test_native_refuses_bad_intervals(interval):
    with pytest.raises(ValueError, match="interval"):
        Sampler(os.getpid(), interval)


@pytest.mark.skipif(not sampler.NATIVE, reason="native sampler only")
def test_native_refuses_a_second_start():
    running = Sampler(os.getpid(), 1.0)
    running.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            running.start()
    finally:
        running.stop()
    running.stop()  # stopping twice is harmless


def test_memory_of():
    assert procfs.memory_of(os.getpid()) > MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_the_kernel_peak_can_be_reset_and_read():
    assert procfs.reset_peak_rss()
    before = procfs.read_peak_rss()
    data = bytearray(64 * MIB)
    after = procfs.read_peak_rss()
    del data
    assert after - before >= 63 * MIB
    assert procfs.reset_peak_rss()
    assert procfs.read_peak_rss() < after


def start_python(code):
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.PIPE
    )
    assert proc.stdout.readline() == b"ready\n"
    return proc


def stop_python(proc):
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.mark.skipif(not sampler.NATIVE, reason="native sampler only")
def test_the_marks_of_children_are_read_and_reset():
    child = start_python(
        "import sys; data = bytearray(60 * 2**20); del data; print('ready', flush=True); "
        "sys.stdin.read()"
    )
    try:
        running = Sampler(os.getpid(), 1.0, children=True, marks=True, reset_marks=True)
        first, second = running.sample_now(), running.sample_now()
    finally:
        stop_python(child)
    marks = {pid: (hwm, reset_ns) for pid, hwm, reset_ns in first[3]}
    memory = dict(first[2])
    assert marks[os.getpid()][1] == 0  # this process's mark is never reset here
    hwm, reset_ns = marks[child.pid]
    assert hwm >= 60 * MIB > memory[child.pid] and reset_ns >= first[0]
    again = {pid: hwm for pid, hwm, _ in second[3]}
    assert again[child.pid] < 30 * MIB  # reset: the 60 MiB peak is behind it


@pytest.mark.skipif(not sampler.NATIVE, reason="native sampler only")
def test_the_thread_finds_the_same_descendants_as_a_full_scan():
    code = (
        "import subprocess, sys; "
        "inner = 'import sys; print(\"ready\", flush=True); sys.stdin.read()'; "
        "kids = [subprocess.Popen([sys.executable, '-c', inner], stdout=subprocess.PIPE, "
        "stdin=subprocess.PIPE) for _ in range(2)]; "
        "[k.stdout.readline() for k in kids]; print('ready', flush=True); sys.stdin.read()"
    )
    running = Sampler(os.getpid(), 0.01, children=True)
    with running:  # started first: the processes below are new to its table
        time.sleep(0.05)
        middle = start_python(code)  # this process -> middle -> two grandchildren
        try:
            seen = running.count
            for _ in range(100_000):
                if running.count >= seen + 5:
                    break
                time.sleep(0.001)
            scanned = running.sample_now()
            by_thread = {pid for pid, _ in running.drain()[-1][2]}
        finally:
            stop_python(middle)
    by_scan = {pid for pid, _ in scanned[2]}
    assert by_thread == by_scan and len(by_scan) == 4  # us, middle, two grandchildren
    assert middle.pid in by_scan


FORKS = """
import os, sys, time, warnings
from memtrim.engine.sampler import Sampler
assert len(os.listdir("/proc/self/task")) == 1, "a thread besides the main one"
running = Sampler(os.getpid(), 0.002)
running.start()
while running.count < 2:
    time.sleep(0.001)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pid = os.fork()
    if pid == 0:  # the child has no sampler thread, and says so
        os._exit(0 if not running._impl.running else 3)
assert os.waitpid(pid, 0)[1] == 0
seen = running.count
while running.count < seen + 2:  # it runs again in the parent
    time.sleep(0.001)
running.stop()
print([str(w.message) for w in caught])
"""


@pytest.mark.skipif(not sampler.NATIVE, reason="native sampler only")
def test_the_thread_is_paused_around_fork():
    from tests.conftest import subprocess_env

    # in a fresh interpreter: no other thread (numpy's, say) makes Python warn anyway
    proc = subprocess.run(
        [sys.executable, "-c", FORKS], capture_output=True, text=True, env=subprocess_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[]\n"  # Python 3.12+ did not warn: ours was the only thread
    assert proc.stderr == ""


@pytest.mark.skipif(not sampler.NATIVE, reason="native sampler only")
@pytest.mark.skipif(sys.version_info < (3, 12), reason="Python 3.12+ warns")
def test_a_program_forking_with_its_own_threads_is_still_warned():
    waiting = threading.Event()
    own = threading.Thread(target=waiting.wait)
    own.start()
    running = Sampler(os.getpid(), 0.002)
    running.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            pid = os.fork()
            if pid == 0:
                os._exit(0)
        os.waitpid(pid, 0)
    finally:
        running.stop()
        waiting.set()
        own.join()
    assert [w for w in caught if "is multi-threaded, use of fork()" in str(w.message)]


def test_the_line_profilers_rss_and_the_samplers_agree():
    # the engine's reading (tracer.c) and the sampler's (sampler.c) share procfs.c
    from memtrim.engine import load

    before = procfs.rss()
    block = bytearray(64 * MIB)
    block[::4096] = b"x" * (64 * MIB // 4096)  # every page touched: resident
    engine, sampled = load().rss(), procfs.rss()
    del block
    assert engine - before >= 60 * MIB and abs(engine - sampled) < 4 * MIB
