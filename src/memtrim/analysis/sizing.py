"""Deep object sizing on plain data: totals, per-object sizes, an ``Asized`` tree.

The walk is iterative (an explicit stack, never Python recursion) and visits
objects in the order Pympler's recursive ``_sizer`` does, so that the same
object is charged to the same parent. Each object is counted once per call;
the top-level objects are never charged to one another.

When the native extension ``memtrim.engine._objects`` is importable the totals
are computed by its walker. It sizes the exact builtin containers and scalars
itself; for every other type it asks :func:`native_plan` once whether the
objects are plain instances it can size too (reading ``__dict__``, inline
values and ``__slots__`` the way ``_layout`` and ``_kinds`` do), and asks
:func:`describe` about everything else. The tests compare both paths object
by object.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from memtrim.analysis import _kinds, _layout

_OPTIONS = ("align", "clip", "code", "footprint", "frames", "ignored", "limit")
_SMALL_REQUEST = 512  # pymalloc serves requests up to this size
_PYMALLOC_ALIGN = 16


@dataclass(frozen=True)
class Options:
    """Sizing options (Pympler's names and defaults, except ``limit``)."""

    align: int = 8
    clip: int = 80
    code: bool = False
    footprint: bool = False
    frames: bool = False
    ignored: bool = True
    limit: int | None = None  # Pympler stops at depth 100; memtrim walks everything

    @classmethod
    def parse(cls, opts: dict[str, Any], extra: Iterable[str] = ()) -> Options:
        """Validate keyword options: unknown names raise TypeError, bad values ValueError."""
        unknown = sorted(set(opts) - set(_OPTIONS) - set(extra))
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(unknown)}")
        picked = {k: v for k, v in opts.items() if k in _OPTIONS}
        align = picked.get("align", 8)
        if not isinstance(align, int) or align < 0 or (align > 1 and align & (align - 1)):
            raise ValueError(f"align must be 0, 1 or a power of 2, not {align!r}")
        limit = picked.get("limit")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be None or an int >= 0, not {limit!r}")
        clip = picked.get("clip", 80)
        if not isinstance(clip, int):
            raise TypeError(f"clip must be an int, not {type(clip).__name__}")
        return cls(**picked)

    @property
    def mask(self) -> int:
        return self.align - 1 if self.align > 1 else 0


# -- flat sizes ------------------------------------------------------------------------------


def _builtin_sizeof(obj: Any) -> int:
    """``__sizeof__`` of the nearest C base type: what ``sys.getsizeof`` would
    compute if the class had not overridden (or broken) ``__sizeof__``."""
    tp = type(obj)
    tattr = _layout.tattr
    for klass in tattr(tp, "__mro__"):
        namespace = tattr(klass, "__dict__")
        if not tattr(klass, "__flags__") & _layout.TPFLAGS_HEAPTYPE and "__sizeof__" in namespace:
            try:
                size = namespace["__sizeof__"](obj)
                break
            except Exception:
                continue
    else:
        size = tattr(tp, "__basicsize__")
    if tattr(tp, "__flags__") & _layout.TPFLAGS_HAVE_GC:
        size += _kinds.GC_HEAD
    if _layout.has_managed_dict(tp) or (
        sys.version_info >= (3, 12) and tattr(tp, "__flags__") & (1 << 3)  # managed weakref
    ):
        size += 2 * _layout.WORD
    return size


def getsizeof(obj: Any) -> int:
    """``sys.getsizeof`` that survives a raising or lying ``__sizeof__``."""
    if type(obj) is _kinds.InlineDict:
        return obj.nbytes
    try:
        return sys.getsizeof(obj)
    except Exception:
        return _builtin_sizeof(obj)


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
    handler = handler or _kinds.handler_for(obj, opts.frames)
    if not is_sized(handler, opts):
        return 0
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
        return _kinds.handler_for(obj, opts.frames)
    except Exception:  # a hostile metaclass (__dir__, __mro__...): size it as an instance
        return _kinds.INSTANCE


def describe(obj: Any, opts: Options, depth: int) -> tuple[int, list[Any]]:
    """Flat size and the referents to follow from ``obj`` found at ``depth``."""
    handler = _handler(obj, opts)
    if not is_sized(handler, opts):
        return 0, []
    size = flat(obj, opts, handler)
    if handler.refs is None or (handler.module and depth):
        return size, []
    if opts.limit is not None and depth >= opts.limit:
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
            return None  # __sizeof__ written in Python: may raise or lie
        size = (
            sys.getsizeof(obj)
            if sizeof is _OBJECT_SIZEOF and not _layout.tattr(tp, "__itemsize__")
            else -1
        )
        return size, tuple(descr for _, descr in _kinds.slot_members(tp))
    except Exception:
        return None


def _safe_refs(handler: _kinds.Handler, obj: Any) -> list[tuple[str, Any]]:
    try:
        return list(handler.refs(obj))  # type: ignore[misc]
    except Exception:
        return []


# -- walks -----------------------------------------------------------------------------------


@dataclass
class Walk:
    """State shared by the objects sized in one call: what was seen already.

    Every object sized is kept alive until the call ends (``keep``): referents
    made on the fly (a class's ``__dict__`` proxy, a bound method, an inline
    values stand-in) would otherwise be freed after sizing and their ids
    reused by the next such object, which would then be skipped as seen.
    """

    opts: Options
    seen: dict[int, int] = field(default_factory=dict)  # id -> 0 top-level, 1 sized
    keep: list[Any] = field(default_factory=list)

    def exclude_top(self, objs: Iterable[Any]) -> None:
        for obj in objs:
            self.seen.setdefault(id(obj), 0)

    def claim(self, obj: Any) -> bool:
        """Mark ``obj`` sized; False if it was seen already."""
        key = id(obj)
        if key in self.seen:
            return False
        self.seen[key] = 1
        self.keep.append(obj)
        return True


def deep_total(walk: Walk, obj: Any) -> int:
    """Size ``obj`` as a top-level object of ``walk``: 0 if already sized."""
    key = id(obj)
    if walk.seen.get(key) == 1:
        return 0
    walk.seen[key] = 1
    return _walk_from(walk, obj, 0)


def _walk_from(walk: Walk, obj: Any, depth: int) -> int:
    opts = walk.opts
    total = 0
    stack: list[tuple[Any, int]] = [(obj, depth)]
    first = True
    while stack:
        current, level = stack.pop()
        if not first and not walk.claim(current):
            continue
        first = False
        size, refs = describe(current, opts, level)
        total += size
        if refs:
            stack.extend((ref, level + 1) for ref in reversed(refs))
    return total


def child_total(walk: Walk, obj: Any, depth: int) -> int:
    """Deep size of a referent found at ``depth`` (0 if seen before)."""
    if not walk.claim(obj):
        return 0
    return _walk_from(walk, obj, depth)


# -- Asized trees ----------------------------------------------------------------------------


@dataclass
class SizedNode:
    """Plain-data result of ``asized``: name, total and flat size, children."""

    name: str
    size: int
    flat: int
    refs: list[SizedNode] = field(default_factory=list)

    def get(self, name: str, default: SizedNode | None = None) -> SizedNode | None:
        """The child called ``name`` (or ``default``)."""
        return next((ref for ref in self.refs if ref.name == name), default)


def sized_tree(walk: Walk, obj: Any, detail: int) -> SizedNode:
    """``asized`` of a top-level object: children named down to ``detail`` levels."""
    clip = walk.opts.clip
    key = id(obj)
    if walk.seen.get(key) == 1:
        return SizedNode(_kinds.name_of(obj, clip), 0, 0)
    walk.seen[key] = 1
    return _node(walk, obj, _kinds.name_of(obj, clip), 0, detail)


def _node(walk: Walk, obj: Any, name: str, depth: int, detail: int) -> SizedNode:
    # Recursion here is bounded by ``detail`` (a display depth), not by the data.
    opts = walk.opts
    handler = _handler(obj, opts)
    if not is_sized(handler, opts):
        return SizedNode(name, 0, 0)
    size = flat(obj, opts, handler)
    node = SizedNode(name, size, size)
    if handler.refs is None or (handler.module and depth):
        return node
    if opts.limit is not None and depth >= opts.limit:
        return node
    for ref_name, ref in _safe_refs(handler, obj):
        label = ref_name or _kinds.name_of(ref, opts.clip)
        if depth >= detail:
            node.size += child_total(walk, ref, depth + 1)
            continue
        if walk.claim(ref):
            child = _node(walk, ref, label, depth + 1, detail)
        else:
            child = SizedNode(label, 0, 0)
        node.refs.append(child)
        node.size += child.size
    return node


# -- entry points ----------------------------------------------------------------------------

try:
    from memtrim.engine import _objects as _native
except ImportError:  # the extension was not compiled: pure-Python walk, same results
    _native = None


def totals(objs: tuple[Any, ...], opts: Options, native: Any = "auto") -> list[int]:
    """Deep size of each top-level object (0 for a repeat), one seen-set for all."""
    native = _native if native == "auto" else native
    if native is not None:
        limit = -1 if opts.limit is None else opts.limit
        return native.sizes(
            list(objs),
            lambda obj: native_plan(obj, opts),
            lambda obj, depth: describe(obj, opts, depth),
            opts.mask,
            limit,
            not opts.footprint,
            not (opts.code and not opts.ignored),  # the class of bytes is never sized
        )
    walk = Walk(opts)
    walk.exclude_top(objs)
    return [deep_total(walk, obj) for obj in objs]
