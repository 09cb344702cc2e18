"""How each kind of object is sized: its flat size and which referents count.

The rules follow Pympler 1.1's ``asizeof`` defaults (so users moving over see
the numbers they know), with the corrections listed in ``docs/objects.md``:
numpy arrays charge only the data they own, ``deque`` items and a
``memoryview``'s exporter are counted, instance attributes are read without
materializing ``__dict__``, and no user-level ``__getattr__``, ``__len__`` or
``__sizeof__`` can break sizing.

A handler is chosen once per type (per class object for classes) and cached.
"""

from __future__ import annotations

import array
import collections
import gc
import inspect
import os
import struct
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from memtrim.analysis import _layout

GC_HEAD = 16 if sys.version_info >= (3, 8) else 24
_IGNORED_MODULES = frozenset({"builtins", "types"})
Refs = Callable[[Any], Iterable[tuple[str, Any]]]


class Handler(NamedTuple):
    """How to size objects of one type."""

    kind: str  # "data" or "code" (code is sized only with code=True)
    refs: Refs | None  # (name, referent) pairs, or None for leaves
    module: bool = False  # modules: referents followed only at top level
    ignored: bool = False  # skipped unless ignored=False (Pympler's "ignored" kind)


class InlineDict:
    """Stand-in for a ``__dict__`` that CPython never built (see ``_layout``)."""

    __slots__ = ("items", "nbytes")

    def __init__(self, values: _layout.InlineValues) -> None:
        self.nbytes = values.nbytes
        self.items = values.items

    def __repr__(self) -> str:
        return "__dict__ (inline values)"


def _static_attr(obj: Any, name: str) -> tuple[bool, Any]:
    """``getattr`` that never runs ``__getattr__`` (or ``__getattribute__`` overrides)."""
    try:
        return True, object.__getattribute__(obj, name)
    except Exception:
        return False, None


def _attrs(obj: Any, names: Iterable[str]) -> Iterator[tuple[str, Any]]:
    for name in names:
        found, value = _static_attr(obj, name)
        if found:
            yield name, value


def _prefixed(obj: Any, prefix: str, exclude: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    try:
        names = [n for n in dir(type(obj)) if n.startswith(prefix) and n not in exclude]
    except Exception:
        return iter(())
    with warnings.catch_warnings():  # e.g. code.co_lnotab is deprecated but still sized
        warnings.simplefilter("ignore", DeprecationWarning)
        return iter(list(_attrs(obj, names)))


def safe_repr(obj: Any, clip: int = 80) -> str:
    """``repr`` that cannot raise, clipped in the middle like Pympler's."""
    try:
        text = repr(obj).replace(os.linesep, "\\n")
    except Exception:
        text = "N/A"
    if len(text) > clip > 0 and clip // 2 - 2 > 0:
        half = clip // 2 - 2
        text = text[:half] + "...." + text[-half:]
    return text


def name_of(obj: Any, clip: int = 80) -> str:
    """Pympler's display name: ``__name__`` if the object has a string one, else repr."""
    found, name = _static_attr(obj, "__name__")
    if found and isinstance(name, str) and name:
        return name
    return safe_repr(obj, clip)


# -- referents, one function per kind ------------------------------------------------------


def _seq_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    for item in list(obj):  # only exact list/tuple/set/frozenset get here
        yield "", item


def _dict_items(obj: Any) -> Iterable[tuple[Any, Any]]:
    if isinstance(obj, dict):
        return list(dict.items(obj))
    return list(obj.items())


def _dict_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    try:
        items = _dict_items(obj)
    except Exception:
        return
    for key, value in items:
        yield f"[K] {safe_str(key)}", key
        yield f"[V] {safe_str(key)}: {safe_repr(value)}", value


def _inline_refs(obj: InlineDict) -> Iterator[tuple[str, Any]]:
    for key, value in obj.items:
        yield f"[K] {key}", key
        yield f"[V] {key}: {safe_repr(value)}", value


def safe_str(obj: Any) -> str:
    """``str`` that cannot raise."""
    try:
        return str(obj)
    except Exception:
        return safe_repr(obj)


def _module_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    found, namespace = _static_attr(obj, "__dict__")
    return _dict_refs(namespace) if found and isinstance(namespace, dict) else iter(())


def _slot_names(tp: type) -> Iterator[str]:
    for klass in _layout.tattr(tp, "__mro__"):
        slots = _layout.tattr(klass, "__dict__").get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if not isinstance(name, str):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{_layout.tattr(klass, '__name__').lstrip('_')}{name}"
            yield name


def slot_members(tp: type) -> list[tuple[str, types.MemberDescriptorType]]:
    """The ``__slots__`` members of ``tp`` that hold objects, in the order they are sized:
    each slot name once, read through the first member descriptor the MRO has for it."""
    members: list[tuple[str, types.MemberDescriptorType]] = []
    seen: set[str] = set()
    for name in _slot_names(tp):
        if name in seen or name in ("__dict__", "__weakref__"):
            continue
        seen.add(name)
        for klass in _layout.tattr(tp, "__mro__"):
            descr = _layout.tattr(klass, "__dict__").get(name)
            if isinstance(descr, types.MemberDescriptorType):
                members.append((name, descr))
                break
    return members


def _slot_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    """Values of ``__slots__`` members, read through their descriptors (unset ones skipped)."""
    tp = type(obj)
    for name, descr in slot_members(tp):
        try:
            value = descr.__get__(obj, tp)
        except Exception:  # an unset slot
            continue
        yield name, value


def instance_dict(obj: Any) -> Any:
    """The instance's ``__dict__`` or an :class:`InlineDict`, never creating one."""
    values = _layout.inline_values(obj)
    if values is not None:
        return InlineDict(values)
    if _layout.has_managed_dict(type(obj)) or _layout.tattr(type(obj), "__dictoffset__"):
        return _layout.materialized_dict(obj)
    return None


def _inst_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    namespace = instance_dict(obj)
    if namespace is not None:
        yield "__dict__", namespace
    yield "__class__", type(obj)
    yield from _slot_refs(obj)


def _namedtuple_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    yield "__class__", type(obj)
    yield from _slot_refs(obj)
    yield from _seq_refs(obj)


def _deque_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    yield from _inst_refs(obj)
    try:
        items = list(collections.deque.__iter__(obj))
    except Exception:
        items = []
    for item in items:
        yield "", item


def _memoryview_refs(obj: memoryview) -> Iterator[tuple[str, Any]]:
    yield "__class__", type(obj)
    try:
        exporter = obj.obj
    except ValueError:  # released
        return
    if exporter is not None:
        yield "obj", exporter


def _weak_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    try:
        target = weakref.ref.__call__(obj)
    except Exception:
        return
    yield name_of(target), target


def _cell_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    found, value = _static_attr(obj, "cell_contents")  # an empty cell raises ValueError
    if found:
        yield "cell_contents", value


def _iter_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    found, label = _static_attr(obj, "__name__")
    label = label if found and isinstance(label, str) and label else "iteref"
    for ref in gc.get_referents(obj):
        yield label, ref


def _named(*names: str) -> Refs:
    return lambda obj: _attrs(obj, names)


def _pref(prefix: str, *names: str, exclude: tuple[str, ...] = ()) -> Refs:
    def refs(obj: Any) -> Iterator[tuple[str, Any]]:
        yield from _attrs(obj, names)
        yield from _prefixed(obj, prefix, exclude)

    return refs


def _gen_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    frame = getattr(obj, "gi_frame", None)
    if frame is not None:
        yield "f_code", frame.f_code


def _class_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    names = ("__class__", "__doc__", "__mro__", "__name__", "__slots__", "__weakref__", "__dict__")
    for name in names:
        try:
            value = type.__getattribute__(obj, name)
        except Exception:
            continue
        yield name, value


# -- choosing a handler ----------------------------------------------------------------------

_EXC = _named("args", "filename", "lineno", "msg", "text")
_INST = Handler("data", _inst_refs)
INSTANCE = _INST  # plain instances: the native walker sizes these itself (sizing.native_plan)
_LEAF = Handler("data", None)
_DICT = Handler("data", _dict_refs)
_SEQ = Handler("data", _seq_refs)
_IGNORED = Handler("code", None, ignored=True)
_IGNORED_DATA = Handler("data", None, ignored=True)


def _static_handlers() -> dict[type, Handler]:
    table: dict[type, Handler] = {}
    for tp in (complex, float, int, bool, type(Ellipsis), type(None), type(NotImplemented)):
        table[tp] = _LEAF
    table[bytes] = _INST  # Pympler 1.1 never registers bytes: an instance with __class__
    for tp in (bytearray, range, slice, struct.Struct, weakref.ProxyType):
        table[tp] = _LEAF
    for tp in (types.GetSetDescriptorType, types.MemberDescriptorType):
        table[tp] = _LEAF
    for tp in (list, tuple, set, frozenset):
        table[tp] = _SEQ
    table[str] = _LEAF
    table[dict] = table[types.MappingProxyType] = _DICT
    table[types.ModuleType] = Handler("data", _module_refs, module=True)
    table[property] = Handler("data", _pref("f", "__doc__"))
    table[enumerate] = table[reversed] = Handler("data", _named("__doc__"))
    table[Exception] = Handler("data", _EXC)
    table[os.stat_result] = Handler("data", _pref("st_"))
    if hasattr(os, "statvfs_result"):
        table[os.statvfs_result] = Handler("data", _pref("f_"))
    table[types.TracebackType] = Handler("data", _pref("tb_"))
    table[weakref.KeyedRef] = table[weakref.ReferenceType] = Handler("data", _weak_refs)
    table[types.GeneratorType] = Handler("data", _gen_refs)
    for tp in (object, super, type):
        table[tp] = _IGNORED
    for tp in (classmethod, staticmethod, types.MethodType):
        table[tp] = Handler("code", _pref("im_", "__doc__", "__name__", "__code__"))
    table[weakref.CallableProxyType] = Handler("code", None)
    _add_iterators(table)
    table[collections.deque] = Handler("data", _deque_refs)
    table[memoryview] = Handler("data", _memoryview_refs)
    return table


def _add_iterators(table: dict[type, Handler]) -> None:
    import re

    samples: list[Any] = [{}.items(), {}.keys(), {}.values(), reversed([]), reversed(())]
    samples.append(re.finditer("", ""))
    samples += [tp() for tp in (list, tuple, dict, bytearray, bytes, frozenset, set, str)]
    for sample in samples:
        tp = type(iter(sample))
        table.setdefault(tp, Handler("data", _iter_refs))


STATIC = _static_handlers()


def _module_name(obj: Any) -> str:
    """The ``__module__`` attribute as Pympler's ``getattr(obj, '__module__', '')`` sees it."""
    found, value = _static_attr(obj, "__module__")
    return value if found and isinstance(value, str) else ""


def _is_numpy(tp: type) -> bool:
    tattr = _layout.tattr
    return any(
        tattr(k, "__module__") == "numpy" and tattr(k, "__name__") == "ndarray"
        for k in tattr(tp, "__mro__")
    )


def _class_handler(obj: type) -> Handler:
    if _module_name(obj) in _IGNORED_MODULES:
        return _IGNORED
    return Handler("code", _class_refs)


def _callable_handler(obj: Any, tp: type) -> Handler:
    if issubclass(tp, type):
        return _class_handler(obj)
    if inspect.isbuiltin(obj):
        return _IGNORED
    if issubclass(tp, types.FunctionType):
        return Handler("code", _pref("func_", "__doc__", "__name__", "__code__", "__closure__"))
    if issubclass(tp, types.MethodType):
        return STATIC[types.MethodType]
    return _INST  # any other callable: sized like an instance


def _dynamic_handler(obj: Any, tp: type, frames: bool) -> Handler:
    """Pympler's ``_typedef`` decision order for types without a static rule."""
    if issubclass(tp, types.ModuleType):
        return STATIC[types.ModuleType]
    if issubclass(tp, types.FrameType):
        return Handler("data", _pref("f_"), ignored=not frames)
    if issubclass(tp, types.CodeType):
        return Handler("code", _pref("co_"))
    if callable(obj):
        return _callable_handler(obj, tp)
    if issubclass(tp, dict):
        return _DICT
    module, name = _layout.tattr(tp, "__module__"), _layout.tattr(tp, "__name__")
    if module == "weakref" and name in ("WeakKeyDictionary", "WeakValueDictionary"):
        return _DICT
    if issubclass(tp, types.CellType):
        return Handler("data", _cell_refs)
    if issubclass(tp, tuple) and "_fields" in dir(tp):
        return Handler("data", _namedtuple_refs)
    if _is_numpy(tp) or issubclass(tp, array.array):
        return _LEAF
    if issubclass(tp, collections.deque):
        return STATIC[collections.deque]
    if _module_name(obj) in _IGNORED_MODULES:
        return _IGNORED_DATA
    if issubclass(tp, BaseException):
        return Handler("data", _EXC)
    return _INST


_cache: dict[Any, Handler] = {}


def handler_for(obj: Any, frames: bool = False) -> Handler:
    """The sizing rule for ``obj`` (cached per type; classes per class object)."""
    tp = type(obj)
    if issubclass(tp, type):
        return _class_handler(obj)
    handler = STATIC.get(tp)
    if handler is not None:
        return handler
    if tp is InlineDict:
        return Handler("data", _inline_refs)
    handler = _cache.get((tp, frames))
    if handler is None:
        handler = _dynamic_handler(obj, tp, frames)
        if not callable(obj):
            _cache[(tp, frames)] = handler
    return handler
