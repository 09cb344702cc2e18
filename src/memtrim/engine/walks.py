"""The native object walks: deep sizing, census, retained size and why().

Every walk over the object graph and every read of CPython's object layout
that the objects product (:mod:`memtrim.objects`) needs runs in C, in
``memtrim.engine._objects`` (``src/memtrim/engine/_native/objects.c``).
Nothing above the engine imports that extension directly: it goes through
this module, which loads it (or raises :class:`~memtrim.engine.EngineMissingError`
when memtrim was not compiled) and exposes it unchanged:

``Walker(classify, describe, standin, mask, limit, footprint, bytes_leaf)``
    The seen-set of one sizing call and the walks from it: ``exclude(objs)``,
    ``claim(obj)``, ``sizes(objs)``, ``deep(objs, depth)``. It sizes builtin
    containers, scalars and plain instances itself and calls back into
    Python for every other type: ``classify(obj)`` once per type
    (``memtrim.objects.sizing.native_plan``), ``describe(obj, depth)`` once
    per object of the other types (``memtrim.objects.sizing.describe``).
    ``standin`` is the class of inline values stand-ins, ``mask`` the
    alignment mask, ``limit`` the depth limit (-1: none); ``footprint``
    gives allocator footprints, ``bytes_leaf`` leaves the ``bytes`` class
    unsized.
``census(objs, skip, skip_globals) -> {type: (count, bytes, largest)}``
    Every object in ``objs`` plus the untracked objects reachable from them
    or from the local variables of any thread's frames (except frames whose
    globals are in ``skip_globals``), leaving out ``skip``.
``retained(obj, classify, describe, standin, mask, limit, footprint, bytes_leaf)``
    ``(retained bytes, reachable bytes, objects freed)`` of ``obj``, from
    reference counts, with the ``Walker``'s arguments.
``untracked(objs, types) -> list``
    The objects of the exact ``types`` (a tuple) the GC does not track
    (strs, bytes, atomic tuples and dicts) reachable from ``objs`` through
    untracked objects, each once (the advisor's strings and records).
``path(roots, target, skip) -> [root, ..., target] | None``
    A shortest reference chain (breadth first over ``tp_traverse``) from one
    of ``roots`` to ``target``, never entering ``skip``.
``paths(roots, targets, skip) -> [[root, ..., target] | None]``
    ``path`` for each of ``targets``, from one search.
``frame_values(gen) -> [(name, value), ...] | None``
    What a generator's (coroutine's) frame holds, read without creating a
    frame object: its set locals, then ``("", value)`` for the stack of a
    suspended one; ``None`` if ``gen`` is not a generator.

Callers look these names up on the module when they call them (``walks.census(...)``),
so the tests can route a walk to its pure-Python oracle (``tests/oracles``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memtrim.engine import load

_objects = load("_objects")

Walker = _objects.Walker
census: Callable[[list[Any], list[Any], list[dict]], dict[type, tuple[int, int, int]]] = (
    _objects.census
)
retained: Callable[..., tuple[int, int, int]] = _objects.retained
path: Callable[[list[Any], Any, list[Any]], list[Any] | None] = _objects.path
paths: Callable[[list[Any], list[Any], list[Any]], list[list[Any] | None]] = _objects.paths
untracked: Callable[[list[Any], tuple[type, ...]], list[Any]] = _objects.untracked
frame_values: Callable[[Any], list[tuple[str, Any]] | None] = _objects.frame_values
