"""Exact heap accounting: install the allocator hooks and read the counters.

The hooks count the *requested* size of every block allocated through
CPython's three allocator domains (``PyMem_RawMalloc``, ``PyMem_Malloc``,
``PyObject_Malloc``) and numpy's data buffers while they are installed, and,
unless a holder asks for Python only, the C allocator of every loaded library
(``malloc`` and its family, anonymous ``mmap``: see ``native.c``), each block
counted once. The "level" is the number of live bytes allocated since
installation; blocks that existed before are not counted, on allocation or on
free.

Native tracking is on by default. ``acquire(native=False)`` asks for Python
only, and so does the environment variable ``MEMTRIM_PYTHON_ONLY=1`` for every
holder that does not say (``--python-only`` sets it, so a profiled program's
children follow). The native hooks are process-wide: while any holder wants
them, every holder's figures include native memory.

Installation is reference-counted and process-wide: every consumer holds the
hooks through a :class:`Handle` (:func:`acquire`) and releases it when done;
when the last handle goes, the hooks come off. The :func:`installed` context
manager holds one for a block.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.machinery
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from memtrim.engine import load, procfs

_engine = load()
_NUMPY_CORE = ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath")
_state: dict[str, Any] = {"baseline_rss": 0, "native_error": ""}
PYTHON_ONLY_ENV = "MEMTRIM_PYTHON_ONLY"


def level() -> int:
    """Live bytes allocated since the hooks went in (all threads)."""
    return _engine.heap_level()


def thread_level() -> int:
    """Net bytes allocated minus freed by the calling thread since install."""
    return _engine.thread_level()


def peak() -> int:
    """Highest :func:`level` since install or the last :func:`reset_peak`."""
    return _engine.heap_peak()


def reset_peak() -> None:
    """Restart the peak from the current level."""
    _engine.heap_reset_peak()


def is_installed() -> bool:
    """Are the hooks in?"""
    return _engine.heap_installed()


def native_default() -> bool:
    """Track native allocations unless ``MEMTRIM_PYTHON_ONLY`` says otherwise."""
    return os.environ.get(PYTHON_ONLY_ENV, "").strip().lower() in ("", "0", "false", "no")


def native_installed() -> bool:
    """Are the native (C allocator) hooks in?

    Once in, they stay until the heap hooks come off, even when the holders
    that asked for them let go first: a native block allocated under them must
    be freed under them, or its bytes would stay counted.
    """
    return _engine.native_installed()


def native_level() -> int:
    """Live bytes, within :func:`level`, from libraries' C allocators."""
    return _engine.native_level()


def native_by_library() -> list[tuple[str, int]]:
    """Live native bytes by the library whose code called the allocator, largest first."""
    return sorted(_engine.native_by_library(), key=lambda item: -item[1])


def native_error() -> str:
    """Why native tracking could not start, if it could not ("" otherwise)."""
    return str(_state["native_error"])


def native_stats() -> dict[str, int]:
    """What the native hooks did: objects and slots patched, mappings not tracked."""
    objects, slots, untracked, dlopens, foreign = _engine.native_stats()
    return {
        "objects": objects,
        "slots": slots,
        "untracked_maps": untracked,
        "dlopens": dlopens,
        "foreign_slots": foreign,
    }


def baseline_rss() -> int:
    """Resident set size of the process when the hooks were first installed."""
    return _state["baseline_rss"]


class Handle:
    """One holder of the hooks: they stay installed while any handle is held.

    Get one from :func:`acquire`; :meth:`release` lets go (idempotent), and so
    does leaving a ``with`` block. Dropping a handle without releasing it does
    *not* release it: the hooks stay until the process exits.
    """

    __slots__ = ("_held", "native", "owner")

    def __init__(self, owner: str, native: bool) -> None:
        self.owner = owner
        self.native = native  # holds the native hooks too
        self._held = True

    @property
    def held(self) -> bool:
        """Not released yet?"""
        return self._held

    def release(self) -> None:
        """Let go of the hooks; they come off when the last handle goes."""
        if self._held:
            self._held = False
            _held.remove(self)
            if self.native:
                _engine.native_uninstall()
            _uninstall()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self._held else "released"
        return f"<hooks.Handle {self.owner or 'anonymous'} {state}>"


_held: list[Handle] = []  # handles not released, oldest first


def acquire(owner: str = "", native: bool | None = None) -> Handle:
    """Hold the hooks (installing them if nobody does); release the handle when done.

    Installing resets the level and forgets the blocks allocated before, so hold
    one handle for the whole time figures accumulate. ``owner`` names the holder
    in :func:`holders` (for diagnostics). ``native``: hook the C allocator of
    every loaded library too (``None``: :func:`native_default`). Where that
    cannot be done, the handle holds the Python hooks alone and
    :func:`native_error` says why.
    """
    first = not _engine.heap_installed()
    if first:
        _state["baseline_rss"] = procfs.rss()
    _engine.heap_install()
    if first:
        _hook_numpy()
    want = native_default() if native is None else bool(native)
    if want:
        try:
            _engine.native_install()
        except (NotImplementedError, RuntimeError) as exc:
            _state["native_error"] = str(exc)
            want = False
    handle = Handle(owner, want)
    _held.append(handle)
    return handle


def _uninstall() -> None:
    _engine.heap_uninstall()
    if not _engine.heap_installed():
        _unwatch_numpy()


def holders() -> list[str]:
    """The owners of the handles held now, oldest first (``""``: anonymous)."""
    return [handle.owner for handle in _held]


@atexit.register
def _release_all_at_exit() -> None:
    # Registered at import, so it runs after every other exit handler of
    # memtrim's (atexit runs them last-registered first): the hooks come off
    # before the interpreter tears down, whoever still holds them (the global
    # ``profile`` decorator's functions hold theirs for the process's life).
    for handle in reversed(list(_held)):
        handle.release()


@contextlib.contextmanager
def installed(owner: str = "", native: bool | None = None) -> Iterator[None]:
    """Keep the hooks installed for the duration of a ``with`` block."""
    with acquire(owner or "hooks.installed()", native):
        yield


# ---------------------------------------------------------------- numpy


def _patch_numpy(module: ModuleType) -> bool:
    api = getattr(module, "_ARRAY_API", None)
    if api is None:
        return False
    try:
        _engine.numpy_patch(api)
    except Exception:  # an unknown numpy: its buffers stay uncounted
        return False
    return True


def _hook_numpy() -> None:
    for name in _NUMPY_CORE:
        module = sys.modules.get(name)
        if module is not None and _patch_numpy(module):
            return
    if not any(isinstance(f, _NumpyWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _NumpyWatcher())


def _unwatch_numpy() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _NumpyWatcher)]


class _NumpyWatcher:
    """Patches numpy's data allocator as soon as numpy's core module loads.

    A meta path finder by duck typing: ``importlib.abc`` costs 20 ms to import
    (it pulls in ``importlib.resources``), on every ``memtrim`` start.
    """

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname not in _NUMPY_CORE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        if _engine.heap_installed():
            _patch_numpy(module)
        _unwatch_numpy()


def watch_begin() -> int:
    """Start watching the peak from the current level; returns a watch id."""
    return _engine.watch_begin()


def watch_peak(watch: int) -> int:
    """Highest level since ``watch`` began."""
    return _engine.watch_peak(watch)


def watch_end(watch: int) -> int:
    """Stop ``watch``; returns the highest level seen since it began."""
    return _engine.watch_end(watch)


def set_limit(at: int) -> None:
    """Refuse the next Python allocation (the MEM and OBJ domains, numpy's
    buffers) that would take the heap level past ``at`` bytes: it fails with
    ``MemoryError``. One refusal, then the limit is off until set again
    (0: off). C libraries' allocations count toward the level but are never
    refused. ``memtrim.limit`` keeps it; the hooks must be held."""
    _engine.set_limit(int(at))


def limit_state() -> tuple[int, int, int]:
    """(refusals so far, the heap level at the last one, the bytes it asked for)."""
    return _engine.limit_state()
