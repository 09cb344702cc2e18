"""Read CPython's instance layout without changing it.

Since 3.11, instances of ordinary classes keep their attributes in a *values*
array owned by the object and only build a real ``dict`` when someone asks for
``obj.__dict__`` (``vars()``, Pympler, pickle...). Asking changes the object: a
new dict is allocated and stays. To size an instance without that side effect
we read the interpreter's own fields with :mod:`ctypes` (only fields of the
object and of its class, never freed memory), and fall back to
``gc.get_referents`` when a layout check does not hold.

Layouts read here (64-bit builds, default GIL build):

* 3.11: dict pointer at ``obj - 3 words``, values pointer at ``obj - 4 words``.
* 3.12: ``obj - 3 words`` holds either a dict pointer or, tagged with bit 0, a
  values pointer (stored as ``values - 1``).
* 3.11 and 3.12: the values array is a block of its own: a prefix of
  ``P = round_up_8(S + 2)`` bytes (its last byte stores ``P``, the one before
  it how many attributes are set, then their insertion order) and ``S``
  pointers. ``S`` is the number of slots the class's shared keys offered when
  the object was made (``dk_nentries + dk_usable``, after ``dk_usable`` was
  decremented for this object). CPython does not record ``S``; it is the
  class's current ``dk_nentries + dk_usable`` for every instance made once
  ``dk_usable`` stopped shrinking (about the 30th instance of a class on), and
  larger for the first instances, which :func:`_values_nbytes` bounds from
  below with ``P``.
* 3.13: the values live inside the object at ``tp_basicsize``: a 4-byte header
  (capacity, size, embedded, valid), ``capacity`` pointers, then the order
  bytes; the dict pointer is still at ``obj - 3 words``. A dict built over
  them keeps pointing into the object (``ma_values``, the sixth word of the
  dict, with ``embedded`` set). The object was allocated with room for the
  slots the shared keys offered *before* the decrement that fixed its
  capacity: one slot more than ``capacity`` while ``dk_usable`` was still
  shrinking (see :func:`_embedded_nbytes`).
* Shared keys (``ht_cached_keys``): ``dk_log2_index_bytes`` at +9, the kind
  at +10, ``dk_usable`` at +16, ``dk_nentries`` at +24, indices at +32, then
  (key, value) entries of two words.

``memtrim.engine._objects`` reads the same fields in C (``read_inline_values``
in ``objects.c``) for the instances it sizes itself; this module serves the
Python side (the ``describe`` callback, the names in ``why()`` chains). The
two must change together. What a generator's frame holds is read in C only
(``walks.frame_values``; ``tests/oracles/layout.py`` reads it with ctypes).
"""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Any, NamedTuple

WORD = ctypes.sizeof(ctypes.c_void_p)
PY = sys.version_info[:2]
TPFLAGS_MANAGED_DICT = 1 << 4
TPFLAGS_INLINE_VALUES = 1 << 2  # 3.13+
TPFLAGS_HEAPTYPE = 1 << 9
TPFLAGS_HAVE_GC = 1 << 14
DICT_KEYS_SPLIT = 2
_SUPPORTED = WORD == 8 and sys.implementation.name == "cpython" and (3, 11) <= PY <= (3, 13)
_FREE_THREADED = bool(getattr(sys, "_is_gil_enabled", lambda: True)() is False)


_TYPE_SLOTS = {
    name: type.__dict__[name]
    for name in (
        "__mro__",
        "__flags__",
        "__basicsize__",
        "__itemsize__",
        "__dictoffset__",
        "__module__",
        "__name__",
        "__qualname__",
        "__dict__",
    )
}


def tattr(tp: type, name: str) -> Any:
    """A type's own ``__mro__``, ``__flags__``, ``__basicsize__``... read from the
    type object itself: a metaclass property of the same name cannot lie (the
    layout readers below turn these numbers into addresses)."""
    return _TYPE_SLOTS[name].__get__(tp)


def lookup(tp: type, name: str) -> Any:
    """What ``name`` resolves to on instances of ``tp`` (MRO order, no descriptor
    call, no metaclass involved); None if nothing defines it."""
    for klass in tattr(tp, "__mro__"):
        namespace = tattr(klass, "__dict__")
        if name in namespace:
            return namespace[name]
    return None


class InlineValues(NamedTuple):
    """Attributes of an instance whose ``__dict__`` was never materialized."""

    nbytes: int  # bytes of the values storage (CPython's own accounting)
    items: tuple[tuple[str, Any], ...]  # (attribute name, value) pairs


def _word(addr: int) -> int:
    return ctypes.c_size_t.from_address(addr).value


def _byte(addr: int) -> int:
    return ctypes.c_uint8.from_address(addr).value


def _deref(addr: int) -> Any:
    """The object at ``addr`` (which the caller knows to be alive)."""
    return ctypes.cast(ctypes.c_void_p(addr), ctypes.py_object).value


def object_at(address: int) -> Any:
    """The object whose ``id`` is ``address``: the caller knows it is alive."""
    return _deref(address)


def has_managed_dict(tp: type) -> bool:
    """True when instances of ``tp`` keep their ``__dict__`` in the managed slot."""
    return _SUPPORTED and not _FREE_THREADED and bool(tattr(tp, "__flags__") & TPFLAGS_MANAGED_DICT)


def materialized_dict(obj: object) -> dict | None:
    """The instance dict of ``obj`` if one exists, without creating it."""
    tp = type(obj)
    if has_managed_dict(tp):
        ptr = _word(id(obj) - 3 * WORD)
        if PY == (3, 12) and ptr & 1:
            return None  # tagged values pointer: no dict yet
        return _deref(ptr) if ptr else None
    return _plain_dict(obj, tp)


def _plain_dict(obj: object, tp: type) -> dict | None:
    """The ``__dict__`` of an instance whose type stores it at ``tp_dictoffset``."""
    offset = tattr(tp, "__dictoffset__")
    if offset > 0 and _SUPPORTED:
        ptr = _word(id(obj) + offset)
        return _deref(ptr) if ptr else None
    if offset < 0:
        # Variable-size layout (subclass of tuple, int, bytes): the slot sits
        # after the items. subtype_traverse visits the dict right before the
        # (heap) type, so read it from there instead of computing the offset.
        refs = gc.get_referents(obj)
        for i, ref in enumerate(refs):
            if ref is tp and i and type(refs[i - 1]) is dict:
                return refs[i - 1]
    return None


def _keys_offset() -> int | None:
    """Word index of ``ht_cached_keys`` inside a heap type (same for all of them).

    PyHeapTypeObject ends with ``ht_name, ht_slots, ht_qualname, ht_cached_keys``;
    find ``ht_name`` and ``ht_qualname`` by identity and take the word after.
    """

    class Probe:
        pass

    name = type.__dict__["__name__"].__get__(Probe)
    qualname = type.__dict__["__qualname__"].__get__(Probe)
    base = id(Probe)
    for i in range(type.__basicsize__ // WORD - 3):
        if _word(base + i * WORD) == id(name) and _word(base + (i + 2) * WORD) == id(qualname):
            return i + 3
    return None


_KEYS_AT = _keys_offset() if _SUPPORTED and not _FREE_THREADED else None


class SharedKeys(NamedTuple):
    """What ``_layout`` reads from a class's shared keys (``ht_cached_keys``)."""

    entries: int  # address of the first (key, value) entry
    nentries: int  # dk_nentries: attribute names known to the class
    usable: int  # dk_usable: names that can still be added


def _shared_keys(tp: type) -> SharedKeys | None:
    """The shared keys of a heap type, if it has split (shared) keys."""
    if _KEYS_AT is None or not tattr(tp, "__flags__") & TPFLAGS_HEAPTYPE:
        return None
    keys = _word(id(tp) + _KEYS_AT * WORD)
    if not keys or _byte(keys + 10) != DICT_KEYS_SPLIT:
        return None
    usable, nentries = _word(keys + 2 * WORD), _word(keys + 3 * WORD)
    entries = keys + 4 * WORD + (1 << _byte(keys + 9))
    return SharedKeys(entries, nentries, usable)


def _values_address(obj: object, tp: type) -> int | None:
    """Address of the first value slot of a never-materialized instance."""
    if PY == (3, 11):
        if _word(id(obj) - 3 * WORD):
            return None
        return _word(id(obj) - 4 * WORD) or None
    if PY == (3, 12):
        ptr = _word(id(obj) - 3 * WORD)
        return ptr + 1 if ptr & 1 else None  # stored as values - 1
    if not tattr(tp, "__flags__") & TPFLAGS_INLINE_VALUES or _word(id(obj) - 3 * WORD):
        return None
    header = id(obj) + tattr(tp, "__basicsize__")
    return header + WORD if _byte(header + 3) else None  # values->valid


def _round8(n: int) -> int:
    return -(-n // WORD) * WORD


def _values_nbytes(values: int, keys: SharedKeys) -> int:
    """Bytes of the separate values block of a 3.11/3.12 instance.

    The block is ``P + S * 8`` bytes, ``P = round8(S + 2)`` stored in the byte
    before the values. ``S`` itself is not stored: it is the class's current
    ``dk_nentries + dk_usable`` unless the object was made while that number
    was still shrinking; then ``P`` says it is at least ``P - 9``. The
    smallest ``S`` consistent with both is taken (exact for every instance
    made once the class's keys stopped shrinking).
    """
    prefix = _byte(values - 1)
    slots = max(keys.nentries + keys.usable, prefix - 9, 1)
    return prefix + slots * WORD


def _embedded_nbytes(capacity: int, keys: SharedKeys | None) -> int:
    """3.13: bytes allocated for an instance's values inside the object.

    ``_PyType_AllocNoTrack`` sizes them from the shared keys' slot count
    *before* ``_PyObject_InitInlineValues`` decrements ``dk_usable`` and fixes
    ``capacity``: while ``dk_usable`` is still shrinking, the allocation has
    room for ``capacity + 1`` slots. An object whose capacity exceeds the
    class's current slot count was made then; so was every object while
    ``dk_usable > 1``. (The one instance whose creation took ``dk_usable``
    from 2 to 1 cannot be told from the later ones: it is charged 8 bytes
    less than it holds.)
    """
    slots = capacity
    if keys is not None and (capacity > keys.nentries + keys.usable or keys.usable > 1):
        slots += 1
    return _round8(slots) + (slots + 1) * WORD  # order bytes, header word, slots


def _inline_slots(obj: object, tp: type) -> tuple[int, int, int, int] | None:
    """(values address, entries address, entries to read, nbytes) if ``obj`` has inline values."""
    if not has_managed_dict(tp):
        return None
    values = _values_address(obj, tp)
    keys = _shared_keys(tp) if values else None
    if keys is None or values is None:
        return None
    if PY >= (3, 13):
        capacity = _byte(values - WORD)  # fixed when the object was made
        return values, keys.entries, min(keys.nentries, capacity), _embedded_nbytes(capacity, keys)
    return values, keys.entries, keys.nentries, _values_nbytes(values, keys)


def inline_values(obj: object) -> InlineValues | None:
    """The attribute storage of ``obj`` if its ``__dict__`` was never built."""
    found = _inline_slots(obj, type(obj))
    if found is None:
        return None
    values, entries, nentries, nbytes = found
    items = []
    for i in range(nentries):
        ptr = _word(values + i * WORD)
        key = _word(entries + i * 2 * WORD)
        if ptr and key:
            items.append((_deref(key), _deref(ptr)))
    return InlineValues(nbytes, tuple(items))


def inline_nbytes(obj: object) -> int:
    """``inline_values(obj).nbytes`` without reading the attributes (0 if none)."""
    found = _inline_slots(obj, type(obj))
    return 0 if found is None else found[3]


def embedded_values_nbytes(obj: object) -> int:
    """3.13+: bytes of the values storage allocated inside the object itself.

    The storage stays part of the object's memory block when a ``__dict__`` is
    built over it (the dict points into the object) and even after the values
    moved out into a dict of their own.
    """
    tp = type(obj)
    if (
        PY < (3, 13)
        or not has_managed_dict(tp)
        or not tattr(tp, "__flags__") & TPFLAGS_INLINE_VALUES
    ):
        return 0
    capacity = _byte(id(obj) + tattr(tp, "__basicsize__"))
    return _embedded_nbytes(capacity, _shared_keys(tp))


def dict_values_embedded(mapping: dict) -> bool:
    """3.13+: True if ``mapping`` is an instance ``__dict__`` whose values live
    inside the instance (``ma_values->embedded``), not in a block of its own."""
    if PY < (3, 13) or not _SUPPORTED or _FREE_THREADED or not isinstance(mapping, dict):
        return False
    values = _word(id(mapping) + 5 * WORD)  # ob_refcnt, ob_type, ma_used, watcher tag, ma_keys
    return bool(values) and bool(_byte(values + 2))
