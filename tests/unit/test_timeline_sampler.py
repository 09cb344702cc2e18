"""The sampler's raw data, its bad input, the psutil fallback and the kernel's peak."""

from __future__ import annotations

import os
import sys
import time

import pytest

from memtrim.engine import sampler
from memtrim.engine.sampler import Sampler

MIB = 2**20


def check_raw(raw):
    t_ns, heap, procs = raw
    assert isinstance(t_ns, int) and t_ns > 0
    assert heap is None or isinstance(heap, int)
    assert procs[0][0] == os.getpid() and procs[0][1] > MIB


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
    assert [t for t, _, _ in taken] == sorted(t for t, _, _ in taken)


def test_heap_level_is_read_when_asked(backend):
    from memtrim.engine import heap

    with heap.installed():
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
    assert sampler.memory_of(os.getpid()) > MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_the_kernel_peak_can_be_reset_and_read():
    assert sampler.reset_peak_rss()
    before = sampler.read_peak_rss()
    data = bytearray(64 * MIB)
    after = sampler.read_peak_rss()
    del data
    assert after - before >= 63 * MIB
    assert sampler.reset_peak_rss()
    assert sampler.read_peak_rss() < after
