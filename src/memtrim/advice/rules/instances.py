"""Objects that carry a per-object namespace: ``slots`` (instances with a
``__dict__`` and a fixed attribute set) and ``records`` (many dicts with the
same keys).

Attribute names are read from the interpreter's layout (the shared keys and
inline values), never through ``__dict__``, which would build a dict and
change the object. The alternative, a class with ``__slots__``, is built for
real and one instance of it is sized on the running interpreter: sizes differ
by version (an instance whose ``__dict__`` was never built is 96 B on 3.11 and
88 B on 3.12 for three attributes; slotted, 56 B).
"""

from __future__ import annotations

import math
import random
import sys
import weakref
from typing import Any

from memtrim.advice.rules.walk import Walk
from memtrim.model.advice import Advice
from memtrim.objects import _layout, sizing

#: instances read per class (their layout is fixed: a sample gives the figure)
SAMPLE = 500
MIN_INSTANCES = 1000
_MOST_SAVED = 256
#: dicts of one key set at one line before the records rule speaks
MIN_RECORDS = 1000
MAX_KEYS = 64


def _attributes(obj: Any) -> tuple[tuple[str, ...], int] | None:
    """(attribute names, bytes of the object with its attribute storage), read
    without building a ``__dict__``; None if the layout is not one we read."""
    base = sizing.getsizeof(obj)  # never the class's own __sizeof__
    values = _layout.inline_values(obj)
    if values is not None:
        names = tuple(k for k, _ in values.items)
        extra = _layout.embedded_values_nbytes(obj) or values.nbytes
        return names, base + extra
    found = _layout.materialized_dict(obj)
    if type(found) is dict:
        names = tuple(found)
        if not all(type(k) is str for k in names):
            return None
        return names, base + _layout.embedded_values_nbytes(obj) + sizing.getsizeof(found)
    return None


def _bound(sizes: list[int], population: int) -> float:
    """The 95 % bound of a sample mean's relative error (finite population):
    the error of ``bytes``, the mean times the count."""
    n = len(sizes)
    mean = sum(sizes) / n
    if n < 2 or mean <= 0:
        return 0.0
    variance = sum((x - mean) ** 2 for x in sizes) / (n - 1)
    return 1.96 * math.sqrt(variance / n * (1 - n / population)) / mean


def _twin_size(names: tuple[str, ...], weakrefs: bool) -> int:
    """Bytes of one instance of a class with exactly these ``__slots__``, all set."""
    slots = names + (("__weakref__",) if weakrefs else ())
    twin = type("MemtrimSlotsTwin", (), {"__slots__": slots})
    obj = twin()
    for name in names:
        setattr(obj, name, None)
    return sys.getsizeof(obj)


def _class_line(cls: type) -> str:
    qualname = _layout.tattr(cls, "__qualname__")
    module = _layout.tattr(cls, "__module__")
    return f"{module}.{qualname}" if module not in ("__main__", "builtins") else qualname


def slots_rule(walk: Walk) -> list[Advice]:
    """Classes with many instances and a fixed attribute set -> ``__slots__``."""
    out = []
    rng = random.Random(0)
    for cls, instances in walk.heap.instances.items():
        # slots save at most the attribute storage and a dict: about this
        # much per instance (104 B for three attributes on 3.11 once a dict
        # was built); classes that cannot reach the threshold are not read
        if len(instances) < MIN_INSTANCES or not walk.worth(len(instances) * _MOST_SAVED):
            continue
        sample = instances if len(instances) <= SAMPLE else rng.sample(instances, SAMPLE)
        read = [_attributes(obj) for obj in sample]
        if any(r is None for r in read):
            continue
        sets = {frozenset(r[0]) for r in read if r is not None}
        if len(sets) != 1:  # attributes differ from instance to instance: now, or later
            walk.vetoes.add(("slots", cls))
            line = walk.sites.main_line(sample)
            if line is not None:
                walk.vetoes.add(("slots", (line.filename, line.lineno)))
            continue
        names = max((r[0] for r in read if r is not None), key=len)
        if ("slots", cls) in walk.vetoes or any(n.startswith("__") for n in names):
            continue
        weakrefs = any(weakref.getweakrefcount(obj) for obj in sample)
        per_now = [r[1] for r in read if r is not None]
        mean = sum(per_now) / len(per_now)
        twin = _twin_size(names, weakrefs)
        now = round(mean * len(instances))
        after = twin * len(instances)
        if now - after <= 0 or not walk.worth(now - after):
            continue
        measured = "all" if len(sample) == len(instances) else "sample"
        error = _bound(per_now, len(instances)) if measured == "sample" else 0.0
        out.append(
            _slots_advice(walk, cls, instances, names, weakrefs, now, after, measured, error)
        )
    return out


def _slots_advice(
    walk: Walk,
    cls: type,
    instances: list[Any],
    names: tuple[str, ...],
    weakrefs: bool,
    now: int,
    after: int,
    measured: str,
    error: float,
) -> Advice:
    slots = names + (("__weakref__",) if weakrefs else ())
    caveats = [
        "instances can no longer get attributes outside __slots__ (AttributeError)",
        "code that reads __dict__ or vars() (copy, pickle protocols 0/1) needs "
        "__getstate__/__setstate__",
        "a subclass without __slots__ of its own gets a __dict__ back",
    ]
    bases = [b for b in _layout.tattr(cls, "__mro__")[1:] if b is not object]
    if bases:
        caveats.insert(
            0,
            "every base class ("
            + ", ".join(_layout.tattr(b, "__qualname__") for b in bases)
            + ") needs __slots__ too, or nothing is saved",
        )
    if not weakrefs:
        caveats.append("weak references to instances need '__weakref__' in __slots__")
    name = _class_line(cls)
    fix = (
        f"class {_layout.tattr(cls, '__qualname__')}: __slots__ = {slots!r}"
        f" (or @dataclass(slots=True))"
    )
    return walk.advice(
        walk.sites.main_line(instances[:SAMPLE]),
        instances[0],
        kind="slots",
        type=name,
        count=len(instances),
        bytes=now,
        after=after,
        fix=fix,
        caveats=caveats,
        measured=measured,
        confidence="review",
        error=error,
    )


def records_rule(walk: Walk) -> list[Advice]:
    """Many dicts with one key set -> a slotted dataclass or namedtuple."""
    by_keys: dict[tuple[str, ...], list[dict]] = {}
    for d in walk.heap.dicts:
        n = len(d)
        if n < 2 or n > MAX_KEYS:
            continue
        keys = tuple(d)
        if all(type(k) is str for k in keys):
            by_keys.setdefault(tuple(sorted(keys)), []).append(d)
    out = []
    for keys, dicts in by_keys.items():
        if len(dicts) < MIN_RECORDS:
            continue
        for line, group in walk.sites.by_line(dicts):
            if len(group) < MIN_RECORDS or (line is None and walk.sites.recording):
                continue
            advice = _records_advice(walk, line, keys, group)
            if advice is not None:
                out.append(advice)
    return out


def _records_advice(
    walk: Walk, line: Any, keys: tuple[str, ...], group: list[dict]
) -> Advice | None:
    now = sum(sys.getsizeof(d) for d in group)
    after = _twin_size(tuple(group[0]), False) * len(group)
    if now - after <= 0 or not walk.worth(now - after):
        return None
    numeric = all(type(v) in (int, float) for d in group[:200] for v in d.values())
    fields = ", ".join(keys)
    fix = (
        f"@dataclass(slots=True) class Record: {fields} (or a namedtuple); "
        f"d['{keys[0]}'] becomes r.{keys[0]}"
    )
    caveats = [
        "code that indexes by key, adds keys, or serializes the dicts (json) must change",
    ]
    if numeric:
        caveats.append(
            f"the values are numbers: columns (one numpy array or array.array per key, "
            f"{len(keys)} x {len(group)} x 8 B) save more"
        )
    return walk.advice(
        line,
        group[0],
        kind="records",
        type=f"dict with keys ({fields})",
        count=len(group),
        bytes=now,
        after=after,
        fix=fix,
        caveats=caveats,
        measured="all",
        confidence="review",
    )
