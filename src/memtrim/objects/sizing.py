"""Deep object sizing on plain data: totals, per-object sizes, an ``Asized`` tree.

The walk is iterative (an explicit stack, never Python recursion) and visits
objects in the order Pympler's recursive ``_sizer`` does, so that the same
object is charged to the same parent. Each object is counted once per call;
the top-level objects are never charged to one another.

The walk runs in the native ``Walker`` (:mod:`memtrim.engine.walks`). It
sizes the exact builtin containers and scalars itself; for every other type
it asks :func:`native_plan` once whether the objects are plain instances it
can size too (reading ``__dict__``, inline values and ``__slots__`` the way
``_layout`` and ``_kinds`` do), and asks :func:`describe` about everything
else. The tests compare it object by object with the same walk in Python
(``tests/oracles/sizing.py``).

An ``asized`` tree is built in Python only for its top ``detail`` levels (the
nodes whose children are shown); the deep size of every shown leaf comes from
one walk over all the leaves of a parent (``Walker.deep``).

No user code runs while sizing: a ``__sizeof__`` written in Python is never
called (:func:`getsizeof`), attributes are read without ``__getattr__`` or
properties (``_kinds``). Only the names of an ``asized`` tree call ``repr``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from memtrim.engine import no_gc, walks
from memtrim.objects import _kinds, _layout

_SMALL_REQUEST = 512  # pymalloc serves requests up to this size
_PYMALLOC_ALIGN = 16


# -- options ---------------------------------------------------------------------------------

_BOOL_OPTIONS = ("code", "derive", "footprint", "frames", "ignored", "infer", "save")
# Pympler options that only change Pympler's printed statistics (memtrim prints none),
# or that memtrim's rules already cover: accepted, checked, without effect (docs/objects.md).
_NO_EFFECT = ("above", "cutoff", "derive", "detail", "save", "stats", "stream")
_COMMON = ("align", "clip", "code", "footprint", "frames", "ignored", "infer", "limit")
_PYMPLER = ("above", "cutoff", "derive", "detail", "stats", "stream")


class OptionError(KeyError, TypeError):
    """An option name the function does not take.

    A ``KeyError``, as Pympler raises for it (``asized(all=True)``), and a
    ``TypeError``, as Python raises for an unexpected keyword argument.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Options:
    """Sizing options (Pympler's names and defaults, except ``limit``)."""

    align: int = 8
    clip: int = 80
    code: bool = False
    footprint: bool = False
    frames: bool = False
    ignored: bool = True
    infer: bool = False
    limit: int | None = None  # Pympler stops at depth 100; memtrim walks everything

    @classmethod
    def parse(cls, opts: dict[str, Any], extra: Iterable[str] = ()) -> Options:
        """Validate keyword options: unknown names raise :class:`OptionError`
        (a KeyError and a TypeError), wrong types TypeError, bad values
        ValueError. ``extra`` names options one function accepts besides the
        common ones (``all`` for ``asizeof``...)."""
        known = set(_COMMON) | set(_PYMPLER) | set(extra)
        unknown = sorted(set(opts) - known)
        if unknown:
            raise OptionError(f"unknown option(s): {', '.join(unknown)}")
        for name, value in opts.items():
            _check(name, value)
        return cls(**{k: v for k, v in opts.items() if k in _COMMON})

    @property
    def mask(self) -> int:
        return self.align - 1 if self.align > 1 else 0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(name: str, value: Any) -> None:
    """Raise TypeError / ValueError for a bad option value."""
    if name in _BOOL_OPTIONS:
        if type(value) is not bool:
            raise TypeError(f"{name} must be True or False, not {value!r}")
    elif name == "align":
        if not _is_int(value):
            raise TypeError(f"align must be an int, not {type(value).__name__}")
        if value < 0 or (value > 1 and value & (value - 1)):
            raise ValueError(f"align must be 0, 1 or a power of 2, not {value!r}")
    elif name in ("limit", "detail", "cutoff"):
        _check_count(name, value, none_ok=name == "limit")
    elif name == "clip":
        if not _is_int(value):
            raise TypeError(f"clip must be an int, not {type(value).__name__}")
    elif name in ("above", "stats"):
        if not (_is_int(value) or isinstance(value, float)):
            raise TypeError(f"{name} must be a number, not {type(value).__name__}")
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, not {value!r}")
    elif name == "stream":
        if value is not None and not callable(getattr(value, "write", None)):
            raise TypeError(f"stream must be None or have a write() method, not {value!r}")
    elif name == "all" and value not in (None, False, True):
        raise TypeError(f"all must be True, False or None, not {value!r}")


def _check_count(name: str, value: Any, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if not _is_int(value):
        kind = "None or an int" if none_ok else "an int"
        raise TypeError(f"{name} must be {kind}, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value!r}")


# -- flat sizes ------------------------------------------------------------------------------

_MANAGED_WEAKREF = 1 << 3  # Py_TPFLAGS_MANAGED_WEAKREF, 3.12+


def _preheader(obj: Any) -> int:
    """What ``sys.getsizeof`` adds to ``__sizeof__``: the GC header and the
    managed dict/weakref pointers (3.13: none for a static type object)."""
    tp = type(obj)
    flags = _layout.tattr(tp, "__flags__")
    if (
        sys.version_info >= (3, 13)
        and tp is type
        and not _layout.tattr(obj, "__flags__") & _layout.TPFLAGS_HEAPTYPE
    ):
        return 0
    size = _kinds.GC_HEAD if flags & _layout.TPFLAGS_HAVE_GC else 0
    managed = _layout.TPFLAGS_MANAGED_DICT
    if sys.version_info >= (3, 12):
        managed |= _MANAGED_WEAKREF
    return size + (2 * _layout.WORD if flags & managed else 0)


def _c_sizeof(tp: type) -> Any:
    """The ``__sizeof__`` to call for instances of ``tp``: its own if it is
    written in C, else the nearest C base's (None if there is none)."""
    sizeof = _layout.lookup(tp, "__sizeof__")
    if type(sizeof) is types.MethodDescriptorType:
        return sizeof
    for klass in _layout.tattr(tp, "__mro__"):
        found = _layout.tattr(klass, "__dict__").get("__sizeof__")
        if type(found) is types.MethodDescriptorType:
            return found
    return None


def getsizeof(obj: Any) -> int:
    """``sys.getsizeof`` that never runs a ``__sizeof__`` written in Python.

    A class that overrides ``__sizeof__`` in Python is sized by the nearest C
    base's ``__sizeof__`` (``object.__sizeof__``: the basic size and items)
    plus what ``sys.getsizeof`` adds, as if there were no override; a C
    ``__sizeof__`` that fails gives the type's basic size. (The census in C
    does the same: ``sizeof_rule`` in ``objects.c``.)
    """
    if type(obj) is _kinds.InlineDict:
        return obj.nbytes
    tp = type(obj)
    sizeof = _c_sizeof(tp)
    if sizeof is not None and sizeof is _layout.lookup(tp, "__sizeof__"):
        try:
            return sys.getsizeof(obj)
        except Exception:
            pass
    size = -1
    if sizeof is not None:
        try:
            size = int(sizeof(obj))
        except Exception:
            size = -1
    if size < 0:
        size = _layout.tattr(tp, "__basicsize__")
    return size + _preheader(obj)


def _allocated(nbytes: int) -> int:
    """Bytes the allocator hands out for a request of ``nbytes``."""
    if nbytes <= 0:
        return 0
    if nbytes <= _SMALL_REQUEST:  # pymalloc size classes are 16-byte steps
        return -(-nbytes // _PYMALLOC_ALIGN) * _PYMALLOC_ALIGN
    return max(32, -(-(nbytes + 8) // 16) * 16)  # glibc malloc chunk: 8-byte header


def _blocks(obj: Any, raw: int) -> list[int]:
    """Split a ``sys.getsizeof`` figure into the separate allocations behind it."""
    tp = type(obj)
    gc = _kinds.GC_HEAD
    if tp is list or tp is dict or tp is set or tp is frozenset or tp is bytearray:
        head = tp.__basicsize__ + (gc if tp is not bytearray else 0)
        if tp is dict and _layout.dict_values_embedded(obj):
            return [head]  # 3.13: the values are inside the instance's block
        return [head, raw - head] if raw > head else [raw]
    if tp is _kinds.InlineDict and sys.version_info >= (3, 13):
        return []  # stored inside the instance: charged to the instance's block
    return [raw]


def footprint_of(obj: Any, raw: int) -> int:
    """Allocator footprint of an object whose ``sys.getsizeof`` is ``raw``.

    On 3.13 an instance's values storage is part of its own block, whether
    or not a ``__dict__`` was built over it; that dict (or the inline values
    stand-in) is then charged only its header, so nothing counts twice.
    """
    blocks = _blocks(obj, raw)
    embedded = _layout.embedded_values_nbytes(obj)
    if embedded and blocks:
        blocks[0] += embedded
    return sum(_allocated(b) for b in blocks)


def flat(obj: Any, opts: Options, handler: _kinds.Handler | None = None) -> int:
    """The flat size of one object under ``opts`` (0 for ignored objects)."""
    handler = handler or _handler(obj, opts)
    if not is_sized(handler, opts):
        return 0
    raw = getsizeof(obj)
    if opts.footprint:
        return footprint_of(obj, raw)
    mask = opts.mask
    return (raw + mask) & ~mask


def flat_of_any(obj: Any, opts: Options) -> int:
    """Pympler's ``flatsize``: the flat size of any object, ``sys.getsizeof``
    aligned (or its footprint), whatever its kind: functions, classes, code,
    modules and the other kinds a deep size ignores or skips included."""
    raw = getsizeof(obj)
    if opts.footprint:
        return footprint_of(obj, raw)
    mask = opts.mask
    return (raw + mask) & ~mask


def is_sized(handler: _kinds.Handler, opts: Options) -> bool:
    """Pympler's rule: data (or code with code=True), unless an ignored kind."""
    if handler.kind == "code" and not opts.code:
        return False
    return not (handler.ignored and opts.ignored)


def _handler(obj: Any, opts: Options) -> _kinds.Handler:
    try:
        return _kinds.handler_for(obj, opts.frames, opts.infer)
    except Exception:  # a hostile metaclass (__dir__, __mro__...): size it as an instance
        return _kinds.INSTANCE


def _follows(handler: _kinds.Handler, opts: Options, depth: int) -> bool:
    """Whether the referents of an object found at ``depth`` are followed."""
    if handler.refs is None or (handler.module and depth):
        return False
    return opts.limit is None or depth < opts.limit


def describe(obj: Any, opts: Options, depth: int) -> tuple[int, list[Any]]:
    """Flat size and the referents to follow from ``obj`` found at ``depth``."""
    handler = _handler(obj, opts)
    if not is_sized(handler, opts):
        return 0, []
    size = flat(obj, opts, handler)
    if not _follows(handler, opts, depth):
        return size, []
    return size, [ref for _, ref in _safe_refs(handler, obj)]


_OBJECT_SIZEOF = object.__dict__["__sizeof__"]


def native_plan(obj: Any, opts: Options) -> tuple[int, tuple[Any, ...]] | None:
    """Whether the native walker may size objects of ``type(obj)`` itself.

    ``None`` sends them to :func:`describe`. Otherwise they are plain
    instances (``_kinds.INSTANCE``) whose flat size needs no Python code:
    ``(size, members)``, where ``size`` is the ``sys.getsizeof`` shared by every
    instance (-1 when it varies, e.g. a subclass of ``int``) and ``members``
    the ``__slots__`` descriptors in the order :func:`describe` follows them.
    Asked once per type and call.
    """
    try:
        if _handler(obj, opts) is not _kinds.INSTANCE:
            return None
        tp = type(obj)
        if not _layout.has_managed_dict(tp) and _layout.tattr(tp, "__dictoffset__") < 0:
            return None  # dict after variable-size items: _layout reads it via gc
        sizeof = _layout.lookup(tp, "__sizeof__")
        if type(sizeof) is not types.MethodDescriptorType:
            return None  # __sizeof__ written in Python: getsizeof() sizes it without calling it
        size = (
            sys.getsizeof(obj)
            if sizeof is _OBJECT_SIZEOF and not _layout.tattr(tp, "__itemsize__")
            else -1
        )
        return size, tuple(descr for _, descr in _kinds.slot_members(tp))
    except Exception:
        return None


def _safe_refs(handler: _kinds.Handler, obj: Any) -> list[tuple[_kinds.Label, Any]]:
    try:
        return list(handler.refs(obj))  # type: ignore[misc]
    except Exception:
        return []


# -- walks -----------------------------------------------------------------------------------


def new_walk(opts: Options) -> Any:
    """A walk for one call: the native ``Walker`` (its seen-set keeps every
    object it counted alive until the call ends)."""
    return walks.Walker(*walker_args(opts))


def walker_args(opts: Options) -> tuple[Any, ...]:
    """The native walker's arguments for ``opts`` (``Walker`` and ``retained``)."""
    limit = -1 if opts.limit is None else opts.limit
    return (
        lambda obj: native_plan(obj, opts),
        lambda obj, depth: describe(obj, opts, depth),
        _kinds.InlineDict,
        opts.mask,
        limit,
        opts.footprint,
        not (opts.code and not opts.ignored),  # the class of bytes is never sized
    )


def totals(objs: tuple[Any, ...], opts: Options) -> list[int]:
    """Deep size of each top-level object (0 for a repeat), one seen-set for all."""
    walk = new_walk(opts)
    tops = list(objs)
    walk.exclude(tops)
    return walk.sizes(tops)


# -- Asized trees ----------------------------------------------------------------------------


@dataclass(slots=True)
class SizedNode:
    """Plain-data result of ``asized``: name, total and flat size, children."""

    name: str
    size: int
    flat: int
    refs: list[SizedNode] = field(default_factory=list)

    def get(self, name: str, default: SizedNode | None = None) -> SizedNode | None:
        """The child called ``name`` (or ``default``)."""
        return next((ref for ref in self.refs if ref.name == name), default)


def sized_trees(
    objs: tuple[Any, ...], opts: Options, detail: int, node: type = SizedNode
) -> list[Any]:
    """``asized`` of each top-level object: children named down to ``detail``
    levels; a repeated object is a zero node."""
    with no_gc():  # on a big heap, each collection costs more than the tree
        return _trees(objs, opts, detail, node)


def _trees(objs: tuple[Any, ...], opts: Options, detail: int, node: type) -> list[Any]:
    walk = new_walk(opts)
    tops = list(objs)
    walk.exclude(tops)
    done: set[int] = set()
    trees = []
    for obj in tops:
        name = _kinds.name_of(obj, opts.clip)
        if id(obj) in done:
            trees.append(node(name, 0, 0))
            continue
        done.add(id(obj))
        if detail == 0:
            trees.append(node(name, walk.sizes([obj])[0], flat(obj, opts)))
        else:
            trees.append(_node(walk, opts, obj, name, 0, detail, node))
    return trees


def _node(
    walk: Any, opts: Options, obj: Any, name: str, depth: int, detail: int, node: type
) -> Any:
    """A shown node at ``depth`` < ``detail`` (already claimed), with its children.

    Recursion here is bounded by ``detail`` (a display depth), not by the data.
    """
    handler = _handler(obj, opts)
    if not is_sized(handler, opts):
        return node(name, 0, 0)
    size = flat(obj, opts, handler)
    result = node(name, size, size)
    if not _follows(handler, opts, depth):
        return result
    refs = _safe_refs(handler, obj)
    clip = opts.clip
    if depth + 1 == detail:  # the children are leaves: one walk for all of them
        sizes = walk.deep([ref for _, ref in refs], depth + 1)
        names = _kinds.label_texts(refs, clip)
        children, total = result.refs, 0
        for i, name in enumerate(names):
            deep = sizes[2 * i]
            if deep < 0:  # seen before: charged elsewhere
                children.append(node(name, 0, 0))
            else:
                children.append(node(name, deep, sizes[2 * i + 1]))
                total += deep
        result.size += total
        return result
    for label, ref in refs:
        text = _kinds.label_text(label, ref, clip)
        if walk.claim(ref):
            child = _node(walk, opts, ref, text, depth + 1, detail, node)
        else:
            child = node(text, 0, 0)
        result.refs.append(child)
        result.size += child.size
    return result
