"""The capture kept on disk while a program runs (run/ondisk.py), on plain data."""

from __future__ import annotations

import pytest

from memtrim.run import ondisk


def test_sizes():
    assert ondisk.parse_bytes("512M") == 512 * 2**20
    assert ondisk.parse_bytes("2GiB") == 2 * 2**30
    assert ondisk.parse_bytes("1048576") == 2**20
    assert ondisk.parse_bytes("lots") is None
    assert ondisk.parse_bytes("0") is None


class FakePressure:
    def __init__(self):
        self.why = None

    def near(self):
        return self.why


@pytest.fixture
def keeper(monkeypatch):
    level = {"peak": 0}
    monkeypatch.setattr(ondisk.calltree, "is_recording", lambda: True)
    monkeypatch.setattr(ondisk.hooks, "peak", lambda: 1000 + level["peak"])
    clock = {"now": 100.0}
    monkeypatch.setattr(ondisk.time, "monotonic", lambda: clock["now"])
    saved = []
    pressure = FakePressure()
    k = ondisk.DiskKeeper(1000, lambda why: dict(why), saved.append, pressure)
    k._start = clock["now"]
    return k, level, clock, saved, pressure


def test_writes_at_the_first_size_then_each_step_at_a_bounded_rate(keeper):
    k, level, clock, saved, _ = keeper
    level["peak"] = ondisk.FIRST - 1
    assert not k.check()
    level["peak"] = ondisk.FIRST
    assert k.check()
    assert saved[-1]["reason"] == "the peak grew" and saved[-1]["peak"] == ondisk.FIRST
    level["peak"] = int(ondisk.FIRST * ondisk.STEP)  # a step, but too soon after the write
    clock["now"] += ondisk.MIN_INTERVAL / 2
    assert not k.check()
    level["peak"] = int(ondisk.FIRST * 1.4)  # in time, but not a step
    clock["now"] += 10
    assert not k.check()
    level["peak"] = int(ondisk.FIRST * ondisk.STEP)
    assert k.check() and len(saved) == 2


def test_near_the_limit_writes_at_once_and_once(keeper):
    k, level, _clock, saved, pressure = keeper
    pressure.why = "cgroup memory 990 B of memory.max 1,000 B"
    level["peak"] = 10  # far below the first size: the limit is what matters
    assert k.check()
    assert saved[-1]["reason"] == "near the memory limit"
    assert saved[-1]["limit"].startswith("cgroup memory")
    assert not k.check()  # once


def test_a_failing_write_is_noted_not_raised(keeper, monkeypatch):
    k, level, *_ = keeper

    def broken(capture):
        raise OSError("disk full")

    k.save = broken
    level["peak"] = ondisk.FIRST
    assert not k.check()
    assert k.errors == ["OSError: disk full"]


def test_own_limit_from_the_environment(monkeypatch):
    pressure = ondisk.Pressure({ondisk.LIMIT_ENV: "1M"})
    assert pressure.own_limit == 2**20
    monkeypatch.setattr(ondisk, "_rss", lambda: 2**20 - 1000)
    assert "MEMTRIM_MEMORY_LIMIT" in (pressure.near() or "")
    monkeypatch.setattr(ondisk, "_rss", lambda: 2**19)
    monkeypatch.setattr(ondisk, "_meminfo", lambda: {})
    pressure.cgroup_limit = None
    assert pressure.near() is None


def test_a_long_run_is_kept_every_refresh_whatever_its_peak(keeper):
    k, level, clock, saved, _ = keeper
    level["peak"] = 10  # far below the first size
    clock["now"] += ondisk.REFRESH - 1
    assert not k.check()
    clock["now"] += 1
    assert k.check()
    assert saved[-1]["reason"] == "the program ran on" and saved[-1]["peak"] == 10
    clock["now"] += ondisk.REFRESH / 2
    assert not k.check()
    clock["now"] += ondisk.REFRESH / 2
    assert k.check() and len(saved) == 2
    clock["now"] += ondisk.REFRESH
    k._spent = ondisk.BUDGET * (clock["now"] - k._start) + 1  # past its share of the time
    assert not k.check()
