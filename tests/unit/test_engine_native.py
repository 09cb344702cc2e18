"""The native hooks: every C allocator function counted exactly, once, and then let go."""

from __future__ import annotations

import ctypes
import mmap
import threading

import pytest

from memtrim.engine import _testing as testing
from memtrim.engine import hooks, load

PAGE = mmap.PAGESIZE
SIZE = 3 * PAGE * 64  # a multiple of the page and of 64: every function's size is exact
FUNCTIONS = [
    "malloc",
    "calloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "valloc",
    "pvalloc",
    "mmap",
]


@pytest.fixture
def native():
    with hooks.acquire("test", native=True) as handle:
        assert handle.native, hooks.native_error()
        yield


def _release(how: str, address: int, size: int) -> None:
    if how == "mmap":
        testing.c_munmap(address, size)
    else:
        testing.c_free(address)


@pytest.mark.parametrize("how", FUNCTIONS)
@pytest.mark.parametrize("size", [SIZE, 64 * 1000 * PAGE])
def test_every_function_is_counted_exactly(native, how, size):
    n0, l0 = hooks.native_level(), hooks.level()
    address = testing.c_alloc(how, size)
    assert hooks.native_level() - n0 == size
    # the level holds it too (and the int object that carries the address)
    assert size <= hooks.level() - l0 <= size + 64
    _release(how, address, size)
    assert hooks.native_level() == n0


def test_realloc_and_reallocarray(native):
    n0 = hooks.native_level()
    address = testing.c_realloc(None, 1000)
    assert hooks.native_level() - n0 == 1000
    address = testing.c_realloc(address, 5_000_000)
    assert hooks.native_level() - n0 == 5_000_000
    address = testing.c_realloc(address, 700, True)
    assert hooks.native_level() - n0 == 700
    testing.c_free(address)
    assert hooks.native_level() == n0


def test_munmap_of_part_of_a_mapping_and_mremap(native):
    n0 = hooks.native_level()
    address = testing.c_alloc("mmap", 10 * PAGE)
    address = testing.c_mremap(address, 10 * PAGE, 20 * PAGE)
    assert hooks.native_level() - n0 == 20 * PAGE
    testing.c_munmap(address + 3 * PAGE, 2 * PAGE)  # a hole in the middle
    assert hooks.native_level() - n0 == 18 * PAGE
    testing.c_munmap(address + 18 * PAGE, 2 * PAGE)  # the tail
    assert hooks.native_level() - n0 == 16 * PAGE
    testing.c_munmap(address, 20 * PAGE)  # the rest, hole and all
    assert hooks.native_level() == n0


def test_blocks_of_other_threads_and_without_the_gil(native):
    n0 = hooks.native_level()
    released = testing.c_alloc_nogil(123_457)
    foreign = testing.c_alloc_in_thread(654_321)
    assert hooks.native_level() - n0 == 123_457 + 654_321
    done = []
    worker = threading.Thread(target=lambda: done.append(testing.c_alloc("malloc", 99_999)))
    worker.start()
    worker.join()
    assert hooks.native_level() - n0 == 123_457 + 654_321 + 99_999
    for address in (released, foreign, *done):
        testing.c_free(address)
    assert hooks.native_level() == n0


def test_python_allocators_are_counted_once(native):
    n0, l0 = hooks.native_level(), hooks.level()
    grown, resized, freed = testing.test_roundtrip(0, 1_000_000, 3_000_000)  # PyMem_RawMalloc
    assert (grown, resized, freed) == (1_000_000, 2_000_000, -3_000_000)
    data = bytearray(10**7)
    assert 10**7 <= hooks.level() - l0 <= 10**7 + 400  # the object, the tuple of the result
    assert hooks.native_level() == n0  # malloc under PyMem_RawMalloc: not again
    del data


def test_numpy_buffers_are_counted_once(native):
    np = pytest.importorskip("numpy")
    n0, l0 = hooks.native_level(), hooks.level()
    array = np.ones(10**6)
    assert 8 * 10**6 <= hooks.level() - l0 <= 8 * 10**6 + 400
    assert hooks.native_level() == n0
    del array


def test_ctypes_calls_to_libc_are_seen(native):
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    n0 = hooks.native_level()
    address = libc.malloc(7_654_321)
    assert hooks.native_level() - n0 == 7_654_321
    libc.free(address)
    assert hooks.native_level() == n0


def test_python_only_counts_no_native_block():
    with hooks.acquire("test", native=False) as handle:
        assert not handle.native and not hooks.native_installed()
        l0 = hooks.level()
        address = testing.c_alloc("malloc", 5_000_000)
        assert hooks.level() - l0 < 200
        testing.c_free(address)


def test_python_only_from_the_environment(monkeypatch):
    monkeypatch.setenv(hooks.PYTHON_ONLY_ENV, "1")
    assert not hooks.native_default()
    with hooks.acquire("test") as handle:
        assert not handle.native
    monkeypatch.setenv(hooks.PYTHON_ONLY_ENV, "0")
    assert hooks.native_default()


def test_the_hooks_come_off_with_the_last_handle():
    engine = load()
    first = hooks.acquire("one", native=True)
    second = hooks.acquire("two", native=True)
    stats = hooks.native_stats()
    assert stats["objects"] > 0 and stats["slots"] > 0
    first.release()
    assert engine.native_installed()
    second.release()
    assert not engine.native_installed() and not engine.heap_installed()
    # the real functions are back: allocating and freeing still works, uncounted
    address = testing.c_alloc("malloc", 1000)
    testing.c_free(address)
    with hooks.acquire("three", native=True):
        n0 = hooks.native_level()
        address = testing.c_alloc("malloc", 4096)
        assert hooks.native_level() - n0 == 4096
        testing.c_free(address)


def test_blocks_from_before_the_hooks_are_ignored():
    address = testing.c_alloc("malloc", 100_000)
    mapped = testing.c_alloc("mmap", 4 * PAGE)
    with hooks.acquire("test", native=True):
        n0, l0 = hooks.native_level(), hooks.level()
        testing.c_free(address)
        testing.c_munmap(mapped, 4 * PAGE)
        assert hooks.native_level() == n0
        assert hooks.level() - l0 <= 0


def test_threads_without_python_after_a_subinterpreter_exists():
    # Once a subinterpreter exists, PyGILState_Check() answers "yes" in every
    # thread: the hooks must not take a C thread for the GIL's holder.
    import importlib

    module = None
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            module = importlib.import_module(name)
            break
        except ImportError:
            continue
    if module is None:
        pytest.skip("no subinterpreters module (Python 3.12+)")
    with hooks.acquire("test", native=True):
        interpreter = module.create()
        try:
            n0 = hooks.native_level()
            address = testing.c_alloc_in_thread(123_456)
            assert hooks.native_level() - n0 == 123_456
            testing.c_free(address)
        finally:
            module.destroy(interpreter)


def test_native_bytes_by_calling_library(native):
    def of_testing():
        return sum(b for name, b in hooks.native_by_library() if "_testing" in name)

    before = of_testing()
    address = testing.c_alloc("malloc", 3_000_000)
    mapped = testing.c_alloc("mmap", 16 * PAGE)
    assert of_testing() - before == 3_000_000 + 16 * PAGE
    address = testing.c_realloc(address, 1_000_000)
    assert of_testing() - before == 1_000_000 + 16 * PAGE
    testing.c_free(address)
    testing.c_munmap(mapped, 16 * PAGE)
    assert of_testing() == before
