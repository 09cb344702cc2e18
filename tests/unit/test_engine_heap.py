"""The allocator hooks count exactly the bytes requested, in every domain."""

from __future__ import annotations

import pytest

from memtrim.engine import _testing as testing
from memtrim.engine import hooks

RAW, MEM, OBJ = 0, 1, 2
SIZES = [1, 16, 100, 512, 513, 4096, 65533, 65534, 65535, 1 << 20, 10**7 + 3]


@pytest.fixture
def installed():
    with hooks.installed():
        yield


@pytest.mark.parametrize("domain", [RAW, MEM, OBJ])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("resize", [1, 700, 70000, 3 * 10**6])
def test_alloc_realloc_free_are_exact(installed, domain, size, resize):
    grown, resized, freed = testing.test_roundtrip(domain, size, resize)
    assert (grown, resized, freed) == (size, resize - size, -resize)


def test_blocks_from_before_the_hooks_are_ignored():
    address = testing.test_alloc(OBJ, 1000)  # allocated without hooks
    with hooks.installed():
        before = hooks.level()
        testing.test_free(OBJ, address)
        assert hooks.level() == before


def test_bytearray_is_object_plus_buffer(installed):
    before = hooks.level()
    data = bytearray(10**6)
    grown = hooks.level() - before
    del data
    # sys.getsizeof(bytearray(n)) == 56 + n + 1; plus the first reading's int
    # object (32 bytes), which is live when the second reading is taken.
    assert grown == 56 + 10**6 + 1 + 32


def test_list_of_none(installed):
    before = hooks.level()
    items = [None] * 10**7
    grown = hooks.level() - before - 32
    # The 80,000,000-byte item array is always a fresh block. List headers (56
    # bytes: the new list's, and the temporary [None]'s) come from CPython's
    # list free-list when it has one, and stay there when freed, so each adds
    # 56 bytes or nothing, depending on the free-list's state.
    assert grown in (80_000_000, 80_000_056, 80_000_112)
    del items


def test_numpy_buffers_are_counted(installed):
    np = pytest.importorskip("numpy")
    before = hooks.level()
    array = np.ones(10**6)
    grown = hooks.level() - before
    assert 8 * 10**6 <= grown <= 8 * 10**6 + 512  # data + the array object and its shape
    del array
    assert hooks.level() - before <= 512


def test_watches_nest(installed):
    outer = hooks.watch_begin()
    start = hooks.level()
    block = bytearray(3 * 10**6)
    inner = hooks.watch_begin()
    spike = bytearray(5 * 10**6)
    del spike
    inner_peak = hooks.watch_end(inner)
    del block
    outer_peak = hooks.watch_end(outer)
    assert 8 * 10**6 <= outer_peak - start <= 8 * 10**6 + 512
    assert inner_peak == outer_peak


def test_install_is_counted():
    was = hooks.is_installed()
    with hooks.installed():
        with hooks.installed():
            assert hooks.is_installed()
        assert hooks.is_installed()
    assert hooks.is_installed() == was
