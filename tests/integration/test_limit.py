"""``memtrim.limit``: a budget held at the allocation that would pass it."""

from __future__ import annotations

import gc
import threading
import warnings

import pytest

import memtrim
from memtrim.engine import hooks

MIB = 1024 * 1024
HEADER = 57  # a bytearray's header on 64-bit CPython: bytearray(n) asks for n + 57 bytes


def test_the_crossing_allocation_raises_and_names_the_line():
    kept = []
    with pytest.raises(memtrim.MemoryLimitExceeded) as info, memtrim.limit("20 MB"):
        for _ in range(100):
            kept.append(bytearray(MIB))
    # 19 blocks of MiB + 57 fit in 20 MiB with the list's few hundred bytes; the 20th does not
    assert len(kept) == 19
    error = info.value
    assert isinstance(error, MemoryError)
    assert isinstance(error.__cause__, MemoryError)
    text = str(error)
    assert "memory limit 20.0 MiB (20,971,520 B)" in text
    # the buffer it asked for, n + 1 (the object itself was made first, within the budget)
    assert f"asked for {MIB + 1:,} B more" in text
    assert "test_limit.py" in text and "19.0 MiB" in text
    assert "memtrim" not in text.split("held the most:")[1].replace("test_limit", "")
    assert not hooks.is_installed()


def test_a_block_under_its_budget_reports_its_exact_peak():
    gc.collect()  # older garbage freed inside the block would lower its (net) peak
    with memtrim.limit(20 * MIB) as block:
        data = bytearray(10 * MIB)
        del data
    # net of what the block frees of older blocks: a few bytes of the interpreter's own
    assert 10 * MIB + HEADER - 64 <= block.peak < 10 * MIB + 2048


def test_warn_refuses_nothing_and_warns_at_the_end():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with memtrim.limit("5 MB", on_exceed="warn") as block:
            data = bytearray(10 * MIB)
        assert len(data) == 10 * MIB
    (warning,) = [w for w in caught if issubclass(w.category, memtrim.MemoryLimitWarning)]
    assert "peak was 10.0 MiB" in str(warning.message)
    assert block.peak >= 10 * MIB + HEADER


def test_limits_nest_and_the_tightest_holds():
    with memtrim.limit("50 MB"):
        with pytest.raises(memtrim.MemoryLimitExceeded), memtrim.limit("10 MB"):
            bytearray(12 * MIB)
        outer_ok = bytearray(30 * MIB)  # the inner block is over: the outer's 50 MB hold
        with pytest.raises(MemoryError):
            bytearray(30 * MIB)
        del outer_ok


def test_as_a_decorator_every_call_has_its_budget():
    @memtrim.limit("1 MB")
    def make(n):
        return bytearray(n)

    assert len(make(1000)) == 1000
    with pytest.raises(memtrim.MemoryLimitExceeded):
        make(2 * MIB)
    assert len(make(2000)) == 2000  # the next call starts again


def test_threads_count_toward_the_block():
    def work():
        blocks.append(bytearray(15 * MIB))

    blocks = []
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with memtrim.limit("10 MB", on_exceed="warn") as block:
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
    assert block.peak >= 15 * MIB


@pytest.mark.parametrize(
    ("budget", "error"),
    [("lots", ValueError), (0, ValueError), (-5, ValueError), (True, TypeError), (1.5, TypeError)],
)
def test_bad_budgets(budget, error):
    with pytest.raises(error):
        memtrim.limit(budget)


def test_bad_on_exceed():
    with pytest.raises(ValueError, match="on_exceed"):
        memtrim.limit("1 MB", on_exceed="ignore")


def test_one_limit_object_is_one_block_at_a_time():
    block = memtrim.limit("10 MB")
    with block, pytest.raises(RuntimeError):
        block.__enter__()
