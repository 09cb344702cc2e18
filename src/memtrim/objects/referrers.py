"""Why is an object still alive: shortest reference chains from a root.

Roots, in this order (on a tie in length, the earlier kind names the chain):

* module globals: every global of every module in ``sys.modules`` is a root of
  its own, named ``module.NAME`` (modules imported last first, so a global
  ``from app import CACHE`` copied into ``__main__`` is named where it was
  defined); a module's running top-level frame is not a separate root;
  memtrim's own modules are no roots, and the search never enters them;
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
is a shortest one. It runs in C (``walks.path``); the tests compare it with
the same search in Python (``tests/oracles/why.py``).
"""

from __future__ import annotations

import gc
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memtrim.engine import walks
from memtrim.objects import _kinds, _layout
from memtrim.objects.census import own_globals


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
        from memtrim.objects.render.text import chain_text

        return chain_text(self)


@dataclass
class RootSet:
    """The objects a search starts from and what to call each of them.

    A root that *is* the target is not searched from; its names are kept,
    all of them, in ``direct``.
    """

    objects: list[Any]
    labels: dict[int, Root]
    skip: list[Any]
    target: Any = None
    direct: list[Root] = field(default_factory=list)

    def add(self, obj: Any, root: Root) -> None:
        """A root, unless the object is one already (the first name wins)."""
        if obj is self.target:
            self.direct.append(root)
        elif id(obj) not in self.labels:
            self.labels[id(obj)] = root
            self.objects.append(obj)


Add = Callable[[Any, Root], None]


def _static(obj: Any, name: str) -> Any:
    """An attribute read without running ``__getattr__`` (None if missing)."""
    try:
        return object.__getattribute__(obj, name)
    except Exception:
        return None


def _is_own(name: Any) -> bool:
    return type(name) is str and (name == "memtrim" or name.startswith("memtrim."))


def _namespaces() -> list[tuple[str, dict]]:
    """(module name, globals) of every module, the most recently imported first;
    memtrim's own modules left out."""
    found = []
    for name, module in reversed(list(sys.modules.items())):
        if not _is_own(name) and issubclass(type(module), types.ModuleType):
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
            if issubclass(type(key), str):
                add(value, Root("module", f"{module}.{key}"))


def _is_class(obj: Any) -> bool:
    return issubclass(type(obj), type)  # not isinstance: a dead weakproxy raises there


_PLAIN_DUNDERS = frozenset({"__dict__", "__weakref__", "__doc__", "__module__", "__qualname__"})


def _class_roots(add: Add, namespaces: list[tuple[str, dict]]) -> list[Any]:
    """Attributes of the classes each module defines (and their nested classes).

    Returns the class dicts: every value in them is a root, so the search
    need not (and should not) enter them again.
    """
    done: set[int] = set()
    class_dicts: list[Any] = []
    for module, namespace in namespaces:
        todo = [
            value
            for value in namespace.values()
            if _is_class(value) and _static(value, "__module__") == module
        ]
        while todo:
            cls = todo.pop()
            if id(cls) in done or not _layout.tattr(cls, "__flags__") & _layout.TPFLAGS_HEAPTYPE:
                continue
            done.add(id(cls))
            qualname = _static(cls, "__qualname__") or cls.__name__
            for key, value in _class_items(cls):
                if not issubclass(type(key), str) or key in _PLAIN_DUNDERS:
                    continue
                add(value, Root("class", f"{module}.{qualname}.{key}"))
                if _is_class(value) and _static(value, "__module__") == module:
                    todo.append(value)
            class_dicts += [ref for ref in gc.get_referents(cls) if type(ref) is dict]
    return class_dicts


def _class_items(cls: type) -> list[tuple[Any, Any]]:
    try:  # the mappingproxy of a class wraps a real dict: no user code runs
        return list(type.__dict__["__dict__"].__get__(cls).items())
    except Exception:
        return []


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
    memtrim = {id(ns) for ns in own_globals()}  # memtrim's own code, in any thread
    for ident, frame in sys._current_frames().items():
        thread = names.get(ident, f"thread {ident}")
        while frame is not None:
            code = frame.f_code
            if (
                id(frame) in own
                or id(frame.f_globals) in memtrim
                or (not code.co_flags & _CO_OPTIMIZED and id(_f_locals(frame)) in namespaces)
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


def collect_roots(skip_frames: int = 1, target: Any = None) -> RootSet:
    """Module globals, class attributes, gc.garbage, frame locals, threads."""
    roots = RootSet([], {}, [], target)
    own: set[int] = {id(sys._getframe())}
    frame = sys._getframe(1)
    for _ in range(skip_frames):
        if frame is None:
            break
        own.add(id(frame))
        frame = frame.f_back
    ownframes = _frames_by_id(own)
    namespaces = _namespaces()
    _module_roots(roots.add, namespaces)
    class_dicts = _class_roots(roots.add, namespaces)
    _garbage_roots(roots.add)
    _frame_roots(roots.add, own, {id(ns) for _, ns in namespaces})
    _thread_roots(roots.add)
    # Every value of a module's globals or of a class's dict is a root of its
    # own: a chain through the namespace (a function's __globals__) is never
    # shorter, and would hide a root that *is* the target.
    holders = [ns for _, ns in namespaces] + class_dicts + _own_holders()
    roots.skip = [*ownframes, roots, roots.objects, roots.labels, *holders]
    return roots


def _own_holders() -> list[Any]:
    """memtrim's own modules, their globals and their classes' dicts: a chain
    through memtrim's bookkeeping (``sys.modules`` -> a memtrim module -> its
    handler cache) is never an answer."""
    found: list[Any] = []
    for name, module in list(sys.modules.items()):
        if _is_own(name) and issubclass(type(module), types.ModuleType):
            found.append(module)
    for namespace in own_globals():
        found.append(namespace)
        for value in list(namespace.values()):
            if _is_class(value) and _layout.tattr(value, "__flags__") & _layout.TPFLAGS_HEAPTYPE:
                found += [ref for ref in gc.get_referents(value) if type(ref) is dict]
    return found


def _frames_by_id(ids: set[int]) -> list[Any]:
    found = []
    frame = sys._getframe()
    while frame is not None:
        if id(frame) in ids:
            found.append(frame)
        frame = frame.f_back
    return found


# -- search ----------------------------------------------------------------------------------


def find_paths(target: Any, roots: RootSet, count: int = 1) -> list[list[Any]]:
    """Up to ``count`` chains, shortest first: each search avoids the holder
    (the last link before the target) of every chain found before it."""
    paths: list[list[Any]] = []
    starts = list(roots.objects)
    skip = [*roots.skip, starts]
    skip.append(skip)
    for _ in range(count):
        path = walks.path(starts, target, skip)
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
    has_dict = _layout.tattr(type(obj), "__dictoffset__")
    namespace = _layout.materialized_dict(obj) if has_dict else None
    if namespace is child:
        return "__dict__"
    if type(namespace) is dict:  # 3.13 traverses the values inside the object even then
        key = _attribute_key(namespace, child)
        if key is not None:
            return key
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


def _generator_local(gen: Any, child: Any) -> str:
    """A suspended generator's (coroutine's) frame: `` local x`` or `` (stack)``."""
    for name, value in _kinds.frame_locals(gen):
        if value is child:
            return f" local {name}" if name else " (stack)"
    return ""


_GENERATORS = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)


def plain_repr(obj: Any, clip: int = 80) -> str:
    """A name that runs none of the program's code: the ``repr`` of an exact
    str, bytes or number, ``list[1000]`` for an exact container, else
    ``<Type object>`` (the advisor's holder chains)."""
    tp = type(obj)
    if tp in (str, bytes, int, float, bool, complex, type(None)):
        return _kinds.safe_repr(obj, clip)
    if tp in (list, tuple, dict, set, frozenset):
        return f"{tp.__name__}[{len(obj)}]"
    return f"<{_layout.tattr(tp, '__qualname__')} object>"


def accessor(obj: Any, child: Any, name: Callable[[Any, int], str] = _kinds.safe_repr) -> str:
    """How to get from ``obj`` to ``child``: ``['key']``, ``[3]``, ``.attr``...
    (``name``: how a dict key is shown)."""
    tp = type(obj)
    if tp in _GENERATORS:
        step = _generator_local(obj, child)
        if step:
            return step
    if issubclass(tp, dict):
        found = _dict_key(obj, child)
        if found is None:
            return ""
        where, key = found
        text = name(key, 40)
        return f"[{text}]" if where == "value" else f" key {text}"
    if type(obj) in (list, tuple):
        for i, item in enumerate(obj):
            if item is child:
                return f"[{i}]"
    if issubclass(tp, (set, frozenset)):
        return "{item}"
    if issubclass(tp, types.FrameType):
        name = _frame_local(obj, child)
        return f" local {name}" if name else " (stack)"
    if _is_class(obj):
        if type(child) is dict:
            return ".__dict__"
        return ".__mro__" if child is _static(obj, "__mro__") else ""
    if issubclass(tp, types.ModuleType):
        return ".__dict__" if child is _static(obj, "__dict__") else ""
    if issubclass(tp, types.CellType):
        return ".cell_contents"
    if issubclass(tp, types.FunctionType):
        for name in ("__globals__", "__defaults__", "__closure__", "__kwdefaults__", "__dict__"):
            if _static(obj, name) is child:
                return f".{name}"
    name = _attr_name(obj, child)
    return f".{name}" if name else ""


def _container_name(obj: Any) -> str:
    """``dict``, ``list``, ``User``; a class by its own name, a module as ``module 'm'``."""
    if _is_class(obj):
        name = _static(obj, "__qualname__")
        return name if type(name) is str else _kinds.safe_repr(obj, 40)
    if issubclass(type(obj), types.ModuleType):
        return f"module {_static(obj, '__name__')!r}"
    return type(obj).__name__


def _attribute_key(namespace: Any, child: Any) -> str | None:
    """The key of ``child`` in an attribute dict, if it reads as ``.key``."""
    found = _dict_key(namespace, child)
    if found and found[0] == "value" and type(found[1]) is str and found[1].isidentifier():
        return found[1]
    return None


def describe_chain(
    path: list[Any], roots: RootSet, name: Callable[[Any, int], str] = _kinds.safe_repr
) -> Chain:
    """Turn a chain of objects into readable plain data.

    ``obj.__dict__ -> dict['name']`` reads ``Type.name``. ``name`` shows an
    object that has no name of its own (:func:`plain_repr` runs none of the
    program's code).
    """
    root = roots.labels.get(id(path[0]))
    if root is None:
        root = Root("object", name(path[0], 60))
    target = short_repr(path[-1]) if name is _kinds.safe_repr else name(path[-1], 60)
    chain = Chain(root, target=target)
    i = 0
    while i < len(path) - 1:
        obj, child = path[i], path[i + 1]
        step = accessor(obj, child, name)
        if step == ".__dict__" and i + 2 < len(path):
            key = _attribute_key(child, path[i + 2])
            if key is not None:
                chain.steps.append((_container_name(obj), f".{key}"))
                i += 2
                continue
        chain.steps.append((_container_name(obj), step))
        i += 1
    return chain


def short_repr(obj: Any) -> str:
    """``<User object>`` for instances, a clipped repr for everything else."""
    tp = type(obj)
    if _layout.lookup(tp, "__repr__") is object.__dict__["__repr__"]:
        return f"<{_layout.tattr(tp, '__qualname__')} object>"
    return _kinds.safe_repr(obj, 60)


def why(target: Any, count: int = 1, skip_frames: int = 0) -> list[Chain]:
    """Up to ``count`` chains from a root to ``target`` as plain data, shortest first
    (empty if none).

    A root that *is* the target (typically the caller's own name for it, a
    local or a module global) is not searched from: such names come after the
    chains through other objects, to fill up ``count``.
    """
    roots = collect_roots(skip_frames + 1, target)
    try:
        chains = [describe_chain(path, roots) for path in find_paths(target, roots, count)]
        chains += [Chain(root, [], short_repr(target)) for root in roots.direct]
        return chains[:count]
    finally:
        roots.target = None
        del roots


def _first_chain(path: list[Any] | None, roots: RootSet) -> Chain | None:
    if not path:
        return None
    if len(path) == 1:  # the target is a root itself (a module global)
        root = roots.labels.get(id(path[0]))
        return Chain(root, [], plain_repr(path[0])) if root is not None else None
    return describe_chain(path, roots, plain_repr)


def first_chains(targets: list[Any], skip_frames: int = 0) -> list[Chain | None]:
    """The shortest chain to each of ``targets`` (None: none found), from one
    search of the heap (the advisor's holders: one ``why`` each would search
    it once per target). Objects are named by :func:`plain_repr`: none of the
    program's code runs."""
    roots = collect_roots(skip_frames + 1)
    skip: list[Any] = []
    try:
        starts = list(roots.objects)
        skip += [*roots.skip, starts, targets]
        skip.append(skip)
        found = walks.paths(starts, list(targets), skip)
        return [_first_chain(path, roots) for path in found]
    finally:  # no cycle of ours may keep the targets (or the roots) alive
        skip.clear()
        roots.skip = []
        del roots
