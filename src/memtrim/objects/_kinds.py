"""How each kind of object is sized: its flat size and which referents count.

The rules follow Pympler 1.1's ``asizeof`` defaults (so users moving over see
the numbers they know), with the corrections listed in ``docs/objects.md``:
numpy arrays charge only the data they own (and an object array counts the
objects it holds), ``deque`` items, a ``memoryview``'s exporter, the items of
``list``/``tuple``/``set``/``frozenset`` subclasses and a generator's local
variables are counted, instance attributes are read without materializing
``__dict__``, and no user code runs: ``__getattr__``, ``__len__``,
``__sizeof__``, properties and ``__class__`` overrides are never called
(``repr`` is, for the names of an ``asized`` tree only).

Referents come with a *label*: a string (an attribute name), or
``("K", key)`` / ``("V", key)`` for a mapping's keys and values, turned into
text by :func:`label_text` only when a name is shown (``asized``), so that
sizing never calls ``repr``.

A handler is chosen once per type (per class object for classes) and cached.
"""

from __future__ import annotations

import array
import collections
import gc
import os
import struct
import sys
import types
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from memtrim.engine import walks
from memtrim.objects import _layout

GC_HEAD = 16 if sys.version_info >= (3, 8) else 24
_IGNORED_MODULES = frozenset({"builtins", "types"})
Label = str | tuple[str, Any]  # see label_text
Refs = Callable[[Any], Iterable[tuple[Label, Any]]]


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


def runs_code(attr: Any) -> bool:
    """True if reading ``attr`` through an instance would call Python code: a
    property (or subclass), or an object whose class defines ``__get__`` in
    Python (``functools.cached_property``...)."""
    tp = type(attr)
    if issubclass(tp, property):
        return True
    if not _layout.tattr(tp, "__flags__") & _layout.TPFLAGS_HEAPTYPE:
        return False
    getter = _layout.lookup(tp, "__get__")
    return getter is not None and type(getter) is not types.WrapperDescriptorType


def _static_attr(obj: Any, name: str) -> tuple[bool, Any]:
    """``getattr`` that runs no user code: never ``__getattr__``, a
    ``__getattribute__`` override, or a property / Python descriptor."""
    try:
        attr = _layout.lookup(type(obj), name)
        if attr is not None and runs_code(attr):
            return False, None
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
    """``repr`` that cannot raise, clipped in the middle like Pympler's.

    A big exact list, tuple, dict, set or frozenset is not turned into its
    whole ``repr`` first: only the pieces the clipped text shows are made
    (:func:`_shown`), so naming a million-item list costs as much as naming
    a short one.
    """
    half = clip // 2 - 2
    if type(obj) in _CONTAINERS and len(obj) > _SMALL and half > 0 and len(_LINESEP) == 1:
        try:
            return _shown(obj, clip, half)
        except Exception:
            pass
    try:
        text = repr(obj)
    except Exception:
        text = "N/A"
    if _LINESEP in text:
        text = text.replace(_LINESEP, "\\n")
    if len(text) > clip > 0 and clip // 2 - 2 > 0:
        half = clip // 2 - 2
        text = text[:half] + "...." + text[-half:]
    return text


_LINESEP = os.linesep
_SMALL = 16  # containers this short (of atoms) are simply repr()'d
_EMPTY = {list: "[]", tuple: "()", dict: "{}", set: "set()", frozenset: "frozenset()"}
_BRACKETS = {
    list: ("[", "]"),
    tuple: ("(", ")"),
    dict: ("{", "}"),
    set: ("{", "}"),
    frozenset: ("frozenset({", "})"),
}
_RECURSION = {list: "[...]", tuple: "(...)", dict: "{...}", set: "set(...)"}
_RECURSION[frozenset] = "frozenset(...)"
_CONTAINERS = frozenset(_BRACKETS)


def _shown(obj: Any, clip: int, half: int) -> str:
    """``repr(obj)`` clipped as :func:`safe_repr` clips it, from its first and
    last pieces only (the text is the same; the items in the middle are
    never repr()'d)."""
    head: list[str] = []
    size = 0
    for piece in _pieces(obj, set(), False):
        head.append(piece)
        size += len(piece)
        if size > clip:
            break
    else:
        return "".join(head)  # short after all: the whole text
    tail: list[str] = []
    size = 0
    for piece in _pieces(obj, set(), True):
        tail.append(piece)
        size += len(piece)
        if size >= half:
            break
    return "".join(head)[:half] + "...." + "".join(reversed(tail))[-half:]


def _atoms(obj: Any) -> bool:
    items = obj.items() if type(obj) is dict else ((item, None) for item in obj)
    return all(type(k) not in _CONTAINERS and type(v) not in _CONTAINERS for k, v in items)


def _pieces(obj: Any, path: set[int], backwards: bool) -> Iterator[str]:
    """The text of ``repr(obj)`` in pieces, first to last (or last to first)."""
    tp = type(obj)
    if tp not in _CONTAINERS or (len(obj) <= _SMALL and _atoms(obj)):
        text = repr(obj)
        yield text.replace(_LINESEP, "\\n") if _LINESEP in text else text
        return
    if not obj:
        yield _EMPTY[tp]
        return
    if id(obj) in path:
        yield _RECURSION[tp]
        return
    path.add(id(obj))
    opening, closing = _BRACKETS[tp]
    if tp is tuple and len(obj) == 1:
        closing = ",)"
    if tp is dict:
        items: Iterable[Any] = reversed(obj.items()) if backwards else obj.items()
    else:
        items = reversed(obj) if backwards and tp in (list, tuple) else obj
        if backwards and tp not in (list, tuple):
            items = list(items)[::-1]
    yield closing if backwards else opening
    for i, item in enumerate(items):
        if i:
            yield ", "
        if tp is dict:
            key, value = item
            first, second = (value, key) if backwards else (key, value)
            yield from _pieces(first, path, backwards)
            yield ": "
            yield from _pieces(second, path, backwards)
        else:
            yield from _pieces(item, path, backwards)
    yield opening if backwards else closing
    path.discard(id(obj))


# exact types whose instances never have a __name__ (named by their repr)
_NAMELESS = frozenset(
    {dict, list, tuple, set, frozenset, int, float, complex, bool, str, bytes, bytearray}
    | {type(None)}
)


def name_of(obj: Any, clip: int = 80) -> str:
    """Pympler's display name: ``__name__`` if the object has a string one, else repr."""
    if type(obj) in _NAMELESS:
        return safe_repr(obj, clip)
    found, name = _static_attr(obj, "__name__")
    if found and issubclass(type(name), str) and name:
        return str.__str__(name)
    return safe_repr(obj, clip)


def label_texts(refs: list[tuple[Label, Any]], clip: int = 80) -> list[str]:
    """:func:`label_text` of many referents (one call for all the children of a node)."""
    nameless, text, clipped = _NAMELESS, label_text, safe_repr
    return [
        clipped(ref, clip) if label == "" and type(ref) in nameless else text(label, ref, clip)
        for label, ref in refs
    ]


def label_text(label: Label, ref: Any, clip: int = 80) -> str:
    """The display name of a referent: its label, or Pympler's ``name_of``."""
    if type(label) is tuple:
        kind, key = label
        if kind == "K":
            return f"[K] {safe_str(key)}"
        return f"[V] {safe_str(key)}: {safe_repr(ref)}"
    return label or name_of(ref, clip)


# -- referents, one function per kind ------------------------------------------------------


def _seq_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    for item in list(obj):  # only exact list/tuple/set/frozenset get here
        yield "", item


_SEQUENCE_BASES = (list, tuple, set, frozenset)


def _items_of_subclass(obj: Any) -> list[Any]:
    """The items of a list/tuple/set/frozenset subclass, read through the
    builtin's own ``__iter__`` (an override is never called)."""
    for base in _SEQUENCE_BASES:
        if issubclass(type(obj), base):
            try:
                return list(base.__iter__(obj))
            except Exception:
                return []
    return []


def _dict_items(obj: Any) -> Iterable[tuple[Any, Any]]:
    if issubclass(type(obj), dict):
        return list(dict.items(obj))
    return list(obj.items())


def _dict_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    try:
        items = _dict_items(obj)
    except Exception:
        return
    for key, value in items:
        yield ("K", key), key
        yield ("V", key), value


def _inline_refs(obj: InlineDict) -> Iterator[tuple[Label, Any]]:
    for key, value in obj.items:
        yield ("K", key), key
        yield ("V", key), value


def safe_str(obj: Any) -> str:
    """``str`` that cannot raise."""
    try:
        return str(obj)
    except Exception:
        return safe_repr(obj)


def _module_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    found, namespace = _static_attr(obj, "__dict__")
    return _dict_refs(namespace) if found and type(namespace) is dict else iter(())


def _slot_names(tp: type) -> Iterator[str]:
    for klass in _layout.tattr(tp, "__mro__"):
        slots = _layout.tattr(klass, "__dict__").get("__slots__", ())
        try:
            names = [slots] if issubclass(type(slots), str) else list(slots)
        except Exception:  # a __slots__ that is not iterable: nothing to read
            names = []
        for name in names:
            if type(name) is not str:
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
            if type(descr) is types.MemberDescriptorType:
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


def _inst_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    namespace = instance_dict(obj)
    if namespace is not None:
        yield "__dict__", namespace
    yield "__class__", type(obj)
    yield from _slot_refs(obj)


def _subclass_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    """A list/tuple/set/frozenset subclass: its attributes, then its items."""
    yield from _inst_refs(obj)
    for item in _items_of_subclass(obj):
        yield "", item


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
    yield "", target  # named after the target (label_text)


def _cell_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    found, value = _static_attr(obj, "cell_contents")  # an empty cell raises ValueError
    if found:
        yield "cell_contents", value


def _iter_refs(obj: Any) -> Iterator[tuple[str, Any]]:
    found, label = _static_attr(obj, "__name__")
    label = str.__str__(label) if found and issubclass(type(label), str) and label else "iteref"
    for ref in gc.get_referents(obj):
        yield label, ref


def _named(*names: str) -> Refs:
    return lambda obj: _attrs(obj, names)


def _pref(prefix: str, *names: str, exclude: tuple[str, ...] = ()) -> Refs:
    def refs(obj: Any) -> Iterator[tuple[str, Any]]:
        yield from _attrs(obj, names)
        yield from _prefixed(obj, prefix, exclude)

    return refs


_CODE_ATTRS = {"generator": "gi_code", "coroutine": "cr_code", "async_generator": "ag_code"}


def _gen_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    """A generator's (coroutine's) code, then what its frame holds: each set
    local variable (``local NAME``) and, when suspended, the evaluation stack
    (``(stack)``: a ``for`` loop's iterator...), read without ``gi_frame``."""
    found, code = _static_attr(obj, _CODE_ATTRS.get(_layout.tattr(type(obj), "__name__"), ""))
    if found:
        yield "f_code", code
    for name, value in frame_locals(obj):
        yield (f"local {name}" if name else "(stack)"), value


def frame_locals(gen: Any) -> list[tuple[str, Any]]:
    """``(name, value)`` of what a generator's frame holds (name "" for the stack)."""
    try:
        return walks.frame_values(gen) or []
    except Exception:
        return []


def _method_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    """Pympler's ``_im_refs``: ``__doc__``, ``__name__`` and ``__code__``, which a
    bound method passes through from its function (``getattr(method, name)``)."""
    found, func = _static_attr(obj, "__func__")
    for name in ("__doc__", "__name__", "__code__"):
        ok, value = _static_attr(obj, name)
        if name != "__doc__" or not ok:
            ok, value = _static_attr(func, name) if found else (False, None)
        if ok:
            yield name, value


def _ndarray_class(tp: type) -> Any:
    for klass in _layout.tattr(tp, "__mro__"):
        if _layout.tattr(klass, "__module__") == "numpy" and _layout.tattr(klass, "__name__") == (
            "ndarray"
        ):
            return klass
    return None


def _numpy_refs(obj: Any) -> Iterator[tuple[Label, Any]]:
    """The objects an array of dtype ``object`` holds, if the array owns its
    buffer (a view's items are held by its base). Read through ndarray's own
    C descriptors and ``tolist`` (no subclass override runs)."""
    nd = _ndarray_class(type(obj))
    try:
        namespace = _layout.tattr(nd, "__dict__")
        dtype = namespace["dtype"].__get__(obj)
        flags = namespace["flags"].__get__(obj)
        if type(dtype).kind.__get__(dtype) != "O" or not flags.owndata:
            return
        flat = namespace["ravel"](obj, "K")  # owns its data: a view, no copy
        items = namespace["tolist"](flat)
    except Exception:
        return
    for item in items:
        yield "", item


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
_SUBCLASS = Handler("data", _subclass_refs)
_NUMPY = Handler("data", _numpy_refs)
_INLINE = Handler("data", _inline_refs)
_GENERATOR = Handler("data", _gen_refs)
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
    for tp in (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType):
        table[tp] = _GENERATOR
    for tp in (object, super, type):
        table[tp] = _IGNORED
    for tp in (classmethod, staticmethod):
        table[tp] = Handler("code", _pref("im_", "__doc__", "__name__", "__code__"))
    table[types.MethodType] = Handler("code", _method_refs)
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
    return value if found and type(value) is str else ""


def _is_numpy(tp: type) -> bool:
    tattr = _layout.tattr
    return any(
        tattr(k, "__module__") == "numpy" and tattr(k, "__name__") == "ndarray"
        for k in tattr(tp, "__mro__")
    )


_CLASS = Handler("code", _class_refs)
_FUNCTION = Handler("code", _pref("func_", "__doc__", "__name__", "__code__", "__closure__"))
_FRAME = {frames: Handler("data", _pref("f_"), ignored=not frames) for frames in (False, True)}
_CODE = Handler("code", _pref("co_"))
_CELL = Handler("data", _cell_refs)
_NAMEDTUPLE = Handler("data", _namedtuple_refs)
_EXCEPTION = Handler("data", _EXC)


def _class_handler(obj: type) -> Handler:
    if _module_name(obj) in _IGNORED_MODULES:
        return _IGNORED
    return _CLASS


def _callable_handler(obj: Any, tp: type) -> Handler:
    if issubclass(tp, type):
        return _class_handler(obj)
    if issubclass(tp, types.BuiltinFunctionType):
        return _IGNORED
    if issubclass(tp, types.FunctionType):
        return _FUNCTION
    if issubclass(tp, types.MethodType):
        return STATIC[types.MethodType]
    return _INST  # any other callable: sized like an instance


_DICT_METHODS = (
    ("items", "keys", "values", "__len__", "get", "has_key"),
    ("iteritems", "iterkeys", "itervalues", "__len__", "get", "has_key"),
)


def _infers_dict(tp: type) -> bool:
    """Pympler's ``infer=True`` duck typing (``_infer_dict``), on the class."""
    return any(all(callable(_layout.lookup(tp, name)) for name in names) for names in _DICT_METHODS)


def _dynamic_handler(obj: Any, tp: type, frames: bool, infer: bool = False) -> Handler:
    """Pympler's ``_typedef`` decision order for types without a static rule."""
    if issubclass(tp, types.ModuleType):
        return STATIC[types.ModuleType]
    if issubclass(tp, types.FrameType):
        return _FRAME[bool(frames)]
    if issubclass(tp, types.CodeType):
        return _CODE
    if callable(obj):
        return _callable_handler(obj, tp)
    if issubclass(tp, dict):
        return _DICT
    module, name = _layout.tattr(tp, "__module__"), _layout.tattr(tp, "__name__")
    if module == "weakref" and name in ("WeakKeyDictionary", "WeakValueDictionary"):
        return _DICT
    if infer and _infers_dict(tp):
        return _DICT
    if issubclass(tp, types.CellType):
        return _CELL
    if issubclass(tp, tuple) and _layout.lookup(tp, "_fields") is not None:
        return _NAMEDTUPLE
    if issubclass(tp, _SEQUENCE_BASES):
        return _SUBCLASS
    if _is_numpy(tp):
        return _NUMPY
    if issubclass(tp, array.array):
        return _LEAF
    if issubclass(tp, collections.deque):
        return STATIC[collections.deque]
    if _module_name(obj) in _IGNORED_MODULES:
        return _IGNORED_DATA
    if issubclass(tp, BaseException):
        return _EXCEPTION
    return _INST


# type -> {(frames, infer): handler}: weak, so that sizing never keeps a class alive
_cache: weakref.WeakKeyDictionary[type, dict[tuple[bool, bool], Handler]] = (
    weakref.WeakKeyDictionary()
)


def handler_for(obj: Any, frames: bool = False, infer: bool = False) -> Handler:
    """The sizing rule for ``obj`` (cached per type; classes per class object)."""
    tp = type(obj)
    if issubclass(tp, type):
        return _class_handler(obj)
    handler = STATIC.get(tp)
    if handler is not None:
        return handler
    if tp is InlineDict:
        return _INLINE
    key = (bool(frames), bool(infer))
    per_type = _cache.get(tp)
    handler = per_type.get(key) if per_type is not None else None
    if handler is None:
        handler = _dynamic_handler(obj, tp, frames, infer)
        if not callable(obj):
            _cache.setdefault(tp, {})[key] = handler
    return handler
