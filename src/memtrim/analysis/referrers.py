"""Why is an object still alive: shortest reference chains from a root.

Roots, in this order (on a tie in length, the earlier kind names the chain):

* module globals: every global of every module in ``sys.modules`` is a root of
  its own, named ``module.NAME`` (modules imported last first, so a global
  ``from app import CACHE`` copied into ``__main__`` is named where it was
  defined); a module's running top-level frame is not a separate root;
* class attributes: every attribute (except dunders) of every class defined
  by a module, found through its globals and nested classes,
  ``module.Class.NAME``;
* ``gc.garbage``, when not empty;
* frames: the local variables of every frame of every thread
  (``sys._current_frames``), memtrim's own frames excluded;
* threads: every ``threading.Thread`` alive or not yet started, and its
  target, args and kwargs (``thread 'worker'._args``).

The search is breadth-first over the references the interpreter itself
reports (``tp_traverse``, i.e. ``gc.get_referents``), so the first chain found
is a shortest one.
"""

from __future__ import annotations

import gc
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memtrim.analysis import _kinds, _layout

try:
    from memtrim.engine import _objects as _native
except ImportError:  # the extension was not compiled: pure-Python search
    _native = None


@dataclass(frozen=True)
class Root:
    """Where a chain starts: its kind ("module", "class", "garbage", "frame",
    "thread") and a readable name."""

    kind: str
    name: str


@dataclass
class Chain:
    """One reference chain: root, then (container, accessor) steps, then the target."""

    root: Root
    steps: list[tuple[str, str]] = field(default_factory=list)
    target: str = ""

    def __str__(self) -> str:
        from memtrim.reporters.objects import chain_text

        return chain_text(self)


@dataclass
class RootSet:
    """The objects a search starts from and what to call each of them."""

    objects: list[Any]
    labels: dict[int, Root]
    skip: list[Any]

    def add(self, obj: Any, root: Root) -> None:
        """A root, unless the object is one already (the first name wins)."""
        if id(obj) not in self.labels:
            self.labels[id(obj)] = root
            self.objects.append(obj)


Add = Callable[[Any, Root], None]


def _static(obj: Any, name: str) -> Any:
    """An attribute read without running ``__getattr__`` (None if missing)."""
    try:
        return object.__getattribute__(obj, name)
    except Exception:
        return None


def _namespaces() -> list[tuple[str, dict]]:
    """(module name, globals) of every module, the most recently imported first."""
    found = []
    for name, module in reversed(list(sys.modules.items())):
        if isinstance(module, types.ModuleType):
            namespace = _static(module, "__dict__")
            if type(namespace) is dict:
                found.append((name, namespace))
    return found


def _items(namespace: Any) -> list[tuple[Any, Any]]:
    try:
        return list(dict.items(namespace))
    except Exception:
        return []


def _module_roots(add: Add, namespaces: list[tuple[str, dict]]) -> None:
    for module, namespace in namespaces:
        for key, value in _items(namespace):
            if isinstance(key, str):
                add(value, Root("module", f"{module}.{key}"))


def _class_roots(add: Add, namespaces: list[tuple[str, dict]]) -> None:
    """Attributes of the classes each module defines (and their nested classes)."""
    done: set[int] = set()
    for module, namespace in namespaces:
        todo = [
            value
            for value in namespace.values()
            if isinstance(value, type) and _static(value, "__module__") == module
        ]
        while todo:
            cls = todo.pop()
            if id(cls) in done or not cls.__flags__ & _layout.TPFLAGS_HEAPTYPE:
                continue
            done.add(id(cls))
            qualname = _static(cls, "__qualname__") or cls.__name__
            for key, value in _items(type.__dict__["__dict__"].__get__(cls)):
                if not isinstance(key, str) or (key.startswith("__") and key.endswith("__")):
                    continue
                add(value, Root("class", f"{module}.{qualname}.{key}"))
                if isinstance(value, type) and _static(value, "__module__") == module:
                    todo.append(value)


def _garbage_roots(add: Add) -> None:
    if gc.garbage:
        add(gc.garbage, Root("garbage", "gc.garbage"))


def _thread_names() -> dict[int, str]:
    return {t.ident: t.name for t in threading.enumerate() if t.ident is not None}


_CO_OPTIMIZED = 0x0001  # a function's frame: its locals are its own


def _frame_roots(add: Add, own: set[int], namespaces: set[int]) -> None:
    # A running frame does not report its locals to the GC (tp_traverse skips
    # frames owned by a thread), so each local variable is a root of its own.
    # A module's top-level frame has the module's globals as its locals: those
    # are module roots already, named through the module.
    names = _thread_names()
    for ident, frame in sys._current_frames().items():
        thread = names.get(ident, f"thread {ident}")
        while frame is not None:
            code = frame.f_code
            if id(frame) in own or (
                not code.co_flags & _CO_OPTIMIZED and id(_f_locals(frame)) in namespaces
            ):
                frame = frame.f_back
                continue
            where = f"{thread}: {code.co_name} ({code.co_filename}:{frame.f_lineno})"
            for name, value in _locals(frame):
                add(value, Root("frame", f"{where} local {name}"))
            frame = frame.f_back


def _f_locals(frame: Any) -> Any:
    try:
        return frame.f_locals
    except Exception:
        return None


def _locals(frame: Any) -> list[tuple[str, Any]]:
    try:
        return list(frame.f_locals.items())
    except Exception:
        return []



def _thread_roots(add: Add) -> None:
    for thread in threading.enumerate() + list(getattr(threading, "_limbo", {}).values()):
        label = f"thread {_static(thread, '_name') or '?'!r}"
        for attr in ("_target", "_args", "_kwargs"):
            value = _static(thread, attr)
            if value is not None and value != () and value != {}:
                add(value, Root("thread", f"{label}.{attr}"))
        add(thread, Root("thread", label))


def collect_roots(skip_frames: int = 1) -> RootSet:
    """Module globals, class attributes, gc.garbage, frame locals, threads."""
    roots = RootSet([], {}, [])
    own: set[int] = set()
    frame = sys._getframe(1)
    for _ in range(skip_frames):
        if frame is None:
            break
        own.add(id(frame))
        frame = frame.f_back
    ownframes = _frames_by_id(own)
    namespaces = _namespaces()
    _module_roots(roots.add, namespaces)
    _class_roots(roots.add, namespaces)
    _garbage_roots(roots.add)
    _frame_roots(roots.add, own, {id(ns) for _, ns in namespaces})
    _thread_roots(roots.add)
    roots.skip = [*ownframes, roots.objects, roots.labels]
    return roots


def _frames_by_id(ids: set[int]) -> list[Any]:
    found = []
    frame = sys._getframe()
    while frame is not None:
        if id(frame) in ids:
            found.append(frame)
        frame = frame.f_back
    return found


# -- search ----------------------------------------------------------------------------------


def _path_py(roots: list[Any], target: Any, skip: list[Any]) -> list[Any] | None:
    """Breadth-first search, same order as the native ``path``."""
    parents: dict[int, Any] = {}
    keep: dict[int, Any] = {}
    skipped = {id(o) for o in skip}
    level = []
    for root in roots:
        if id(root) not in parents:
            parents[id(root)] = None
            keep[id(root)] = root
            level.append(root)
    while level and id(target) not in parents:
        nxt = []
        for obj in level:
            if obj is target or (not gc.is_tracked(obj) and not _is_gc_type(obj)):
                continue
            for ref in gc.get_referents(obj):
                if id(ref) in skipped or id(ref) in parents:
                    continue
                parents[id(ref)] = obj
                keep[id(ref)] = ref
                nxt.append(ref)
            if id(target) in parents:
                break
        level = nxt
    if id(target) not in parents:
        return None
    chain = [target]
    while parents[id(chain[-1])] is not None:
        chain.append(parents[id(chain[-1])])
    return chain[::-1]


def _is_gc_type(obj: Any) -> bool:
    return bool(type(obj).__flags__ & _layout.TPFLAGS_HAVE_GC)


def find_paths(
    target: Any, roots: RootSet, count: int = 1, native: Any = "auto"
) -> list[list[Any]]:
    """Up to ``count`` chains, shortest first: each search avoids the holder
    (the last link before the target) of every chain found before it."""
    paths: list[list[Any]] = []
    starts = list(roots.objects)
    skip = [*roots.skip, starts]
    skip.append(skip)
    native = _native if native == "auto" else native
    search = native.path if native is not None else _path_py
    for _ in range(count):
        path = search(starts, target, skip)
        if not path or len(path) < 2:
            break
        paths.append(path)
        holder = path[-2]  # look for another way in
        skip.append(holder)
        if len(path) == 2:
            starts[:] = [o for o in starts if o is not holder]
    del starts, skip
    return paths


# -- naming the links ------------------------------------------------------------------------


def _dict_key(container: dict, child: Any) -> tuple[str, Any] | None:
    """("value", key) if ``child`` is a value of ``container``, ("key", key) if a key."""
    try:
        for key, value in list(dict.items(container)):
            if value is child:
                return "value", key
            if key is child:
                return "key", key
    except Exception:
        return None
    return None


def _attr_name(obj: Any, child: Any) -> str | None:
    values = _layout.inline_values(obj)
    if values is not None:
        for name, value in values.items:
            if value is child:
                return name
    namespace = _layout.materialized_dict(obj) if type(obj).__dictoffset__ else None
    if namespace is child:
        return "__dict__"
    for name, value in _kinds._slot_refs(obj):
        if value is child:
            return name
    return None


def _frame_local(frame: Any, child: Any) -> str | None:
    try:
        for name, value in list(frame.f_locals.items()):
            if value is child:
                return name
    except Exception:
        return None
    return None


def accessor(obj: Any, child: Any) -> str:
    """How to get from ``obj`` to ``child``: ``['key']``, ``[3]``, ``.attr``..."""
    if isinstance(obj, dict):
        found = _dict_key(obj, child)
        if found is None:
            return ""
        where, key = found
        text = _kinds.safe_repr(key, 40)
        return f"[{text}]" if where == "value" else f" key {text}"
    if type(obj) in (list, tuple):
        for i, item in enumerate(obj):
            if item is child:
                return f"[{i}]"
    if isinstance(obj, (set, frozenset)):
        return "{item}"
    if isinstance(obj, types.FrameType):
        name = _frame_local(obj, child)
        return f" local {name}" if name else " (stack)"
    if isinstance(obj, type):
        return ".__dict__" if child is obj.__dict__ or isinstance(child, dict) else ".__mro__"
    if isinstance(obj, types.CellType):
        return ".cell_contents"
    if isinstance(obj, types.FunctionType):
        for name in ("__globals__", "__defaults__", "__closure__", "__kwdefaults__", "__dict__"):
            if getattr(obj, name, None) is child:
                return f".{name}"
    name = _attr_name(obj, child)
    return f".{name}" if name else ""


def describe_chain(path: list[Any], roots: RootSet) -> Chain:
    """Turn a chain of objects into readable plain data."""
    root = roots.labels.get(id(path[0]), Root("object", _kinds.safe_repr(path[0], 60)))
    chain = Chain(root, target=short_repr(path[-1]))
    start = 0
    if root.kind == "module" and len(path) > 1:
        found = _dict_key(path[0], path[1])
        if found and found[0] == "value":
            chain.root = Root("module", f"{root.name}.{found[1]}")
            start = 1
    for obj, child in zip(path[start:-1], path[start + 1 :], strict=True):
        chain.steps.append((type(obj).__name__, accessor(obj, child)))
    return chain


def short_repr(obj: Any) -> str:
    """``<User object>`` for instances, a clipped repr for everything else."""
    tp = type(obj)
    if tp.__repr__ is object.__repr__:
        return f"<{tp.__qualname__} object>"
    return _kinds.safe_repr(obj, 60)


def why(target: Any, count: int = 1, skip_frames: int = 0, native: Any = "auto") -> list[Chain]:
    """Shortest chains from a root to ``target`` as plain data (empty if none).

    A local variable that *is* the target (typically the caller's own name for
    it) is only reported when nothing else holds the target.
    """
    roots = collect_roots(skip_frames + 1)
    direct = [o for o in roots.objects if o is target]
    roots.objects[:] = [o for o in roots.objects if o is not target]
    try:
        paths = find_paths(target, roots, count, native)
        if not paths:
            paths = [[o] for o in direct[:count]]
        return [describe_chain(path, roots) for path in paths]
    finally:
        del roots, direct
