"""Numbers kept as objects: ``array`` (lists and tuples of ints or floats) and
``dtype`` (numpy arrays wider than their values, pandas columns).

``bytes`` is what deleting the data would free: the sequence itself plus the
number objects only it holds (a small int shared with the rest of the
program is not freed with the list). ``after`` is the size of the
alternative, built from the same values (``array.array``), or, for numpy,
the narrower dtype's buffer, checked value by value in chunks.
"""

from __future__ import annotations

import array
import gc
import sys
from collections.abc import Iterable
from itertools import compress
from typing import Any

from memtrim.advice.rules.walk import Walk
from memtrim.model.advice import Advice
from memtrim.objects import _layout, sizing

# typecode -> (low, high), smallest first; 'l'/'L' are skipped ('q'/'Q' are the same on Linux)
_INT_CODES = [
    (
        code,
        -(1 << (8 * size - 1)) if code.islower() else 0,
        (1 << (8 * size - (1 if code.islower() else 0))) - 1,
    )
    for code, size in (
        ("B", 1),
        ("b", 1),
        ("H", 2),
        ("h", 2),
        ("I", 4),
        ("i", 4),
        ("Q", 8),
        ("q", 8),
    )
]
_NUMPY_OF = {
    "b": "int8",
    "B": "uint8",
    "h": "int16",
    "H": "uint16",
    "i": "int32",
    "I": "uint32",
    "q": "int64",
    "Q": "uint64",
    "d": "float64",
}
# values above this fraction of a typecode's range are an overflow risk
_NEAR = 0.9


def _typecode(lo: int, hi: int) -> str | None:
    """The smallest integer typecode that holds ``lo..hi`` (None: none does)."""
    for code, low, high in _INT_CODES:
        if array.array(code).itemsize and low <= lo and hi <= high:
            return code
    return None


def _scan(seq: Any) -> tuple[type, int, int] | None:
    """(int or float, min, max) if every item is exactly an int or exactly a
    float (the loops run in C: a walk may meet lists of millions)."""
    kinds = set(map(type, seq))
    if kinds == {int}:
        return int, min(seq), max(seq)
    if kinds == {float}:
        return float, 0, 0
    return None


def owned_bytes(container: Any, items: Any, atoms: bool = True) -> int:
    """The container plus the items nothing else refers to: what deleting it
    frees (a small int shared with the rest of the program is not freed).
    ``atoms``: the items are exact builtins (``sys.getsizeof`` runs no code of
    the program); else they are sized without calling a ``__sizeof__`` of theirs."""
    # compress() holds the item it is deciding on while map() passes its own
    # reference to getrefcount: 3 means the container holds the only other one
    only = map((3).__ge__, map(sys.getrefcount, items))
    size = sys.getsizeof if atoms else sizing.getsizeof
    return sizing.getsizeof(container) + sum(map(size, compress(items, only)))


def array_rule(walk: Walk) -> list[Advice]:
    """Lists and tuples of numbers -> ``array.array`` of the smallest typecode."""
    by_type: dict[tuple[type, type], list[tuple[Any, int, int]]] = {}
    for seq in walk.heap.seqs:
        found = _scan(seq)
        if found is not None:
            by_type.setdefault((type(seq), found[0]), []).append((seq, found[1], found[2]))
        elif type(seq[0]) in (int, float) and walk.sites.recording:
            # numbers mixed with other things now: no array holds what this line makes
            line = walk.sites.main_line([seq])
            if line is not None:
                walk.vetoes.add(("array", (line.filename, line.lineno)))
    out = []
    for (container, number), entries in by_type.items():
        seqs = [e[0] for e in entries]
        for line, group in walk.sites.by_line(seqs, each=True):
            if line is None and walk.sites.recording:
                continue  # made before the recording: not the program's
            advice = _array_advice(walk, line, container, number, group, entries)
            if advice is not None:
                out.append(advice)
    return out


def _array_advice(
    walk: Walk,
    line: Any,
    container: type,
    number: type,
    group: list[Any],
    entries: list[tuple[Any, int, int]],
) -> Advice | None:
    ids = {id(s) for s in group}
    mine = [e for e in entries if id(e[0]) in ids]
    items = sum(len(s) for s in group)
    if not walk.worth(items * 8):
        return None
    caveats = []
    if number is int:
        lo = min(e[1] for e in mine)
        hi = max(e[2] for e in mine)
        code = _typecode(lo, hi)
        if code is None:
            if line is not None:
                walk.vetoes.add(("array", (line.filename, line.lineno)))
            return None
        low, high = next((lo_, hi_) for c, lo_, hi_ in _INT_CODES if c == code)
        if hi > _NEAR * high or (low < 0 and lo < _NEAR * low):
            caveats.append(
                f"values reach {max(hi / high, lo / low if low else 0):.0%} of the range of "
                f"typecode '{code}': a larger value later raises OverflowError (use a wider one)"
            )
    else:
        code = "d"
    now = sum(owned_bytes(s, s) for s in group)
    after = sum(sys.getsizeof(array.array(code, s)) for s in group)
    if now - after <= 0:
        return None
    name = container.__name__
    caveats += [
        f"an array holds only {number.__name__}s; appending anything else raises TypeError",
        f"items come back as new {number.__name__} objects (code that relies on `is` changes)",
    ]
    fix = (
        f"build array.array('{code}', ...) instead of the {name} "
        f"(or numpy.array(..., dtype=numpy.{_NUMPY_OF[code]}))"
    )
    return walk.advice(
        line,
        max(group, key=len),
        kind="array",
        type=f"{name} of {number.__name__}",
        count=len(group),
        bytes=now,
        after=after,
        fix=fix,
        caveats=caveats,
        measured="all",
        confidence="review",
    )


# -- numpy and pandas -------------------------------------------------------------------------

_CHUNK = 1 << 20


def _chunks(arr: Any) -> Iterable[Any]:
    flat = arr.reshape(-1)
    for start in range(0, flat.shape[0], _CHUNK):
        yield flat[start : start + _CHUNK]


def _narrow_int(np: Any, arr: Any) -> Any:
    """The smallest integer dtype that holds every value of ``arr`` (None: it has it)."""
    lo, hi = int(arr.min()), int(arr.max())
    kinds = ["uint8", "uint16", "uint32"] if lo >= 0 else ["int8", "int16", "int32"]
    for name in kinds:
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            dtype = np.dtype(name)
            return dtype if dtype.itemsize < arr.dtype.itemsize else None
    return None


def _float_error(np: Any, arr: Any) -> float:
    """The largest relative error float32 would put on ``arr``'s values (inf if one overflows)."""
    worst = 0.0
    with np.errstate(all="ignore"):
        for part in _chunks(arr):
            narrow = part.astype(np.float32).astype(arr.dtype)
            if not np.isfinite(narrow[np.isfinite(part)]).all():
                return float("inf")
            scale = np.maximum(np.abs(part), np.finfo(np.float32).tiny)
            err = np.abs(narrow - part) / scale
            err = err[np.isfinite(err)]
            if err.size:
                worst = max(worst, float(err.max()))
    return worst


def dtype_rule(walk: Walk) -> list[Advice]:
    """numpy arrays whose values fit a narrower dtype; pandas columns."""
    np = sys.modules.get("numpy")
    out: list[Advice] = []
    framed = _frame_arrays(walk.heap.frames, np)  # a DataFrame's columns: advised with it
    if np is not None and walk.heap.arrays:
        owning = [
            a
            for a in walk.heap.arrays
            if id(a) not in framed
            if a.base is None
            and a.flags.owndata
            and a.size
            and a.dtype.kind in "iuf"
            and a.dtype.itemsize > 1
            and walk.worth(a.nbytes // 2)
        ]
        for arr in owning:
            out += _numpy_advice(walk, np, arr)
    for frame in walk.heap.frames:
        out += _pandas_advice(walk, frame)
    return out


def _frame_arrays(frames: list[Any], np: Any) -> set[int]:
    """ids of the numpy arrays a few references below the DataFrames (their blocks)."""
    if not frames or np is None:
        return set()
    found: set[int] = set()
    seen: set[int] = set()
    level = list(frames)
    for _ in range(5):
        below = []
        for ref in gc.get_referents(*level):
            if id(ref) in seen or isinstance(ref, type):
                continue
            seen.add(id(ref))
            if type(ref) is np.ndarray:
                found.add(id(ref))
                if ref.base is not None:
                    found.add(id(ref.base))
            elif type(ref) in (list, tuple, dict) or str(
                _layout.tattr(type(ref), "__module__")
            ).startswith("pandas"):
                below.append(ref)
        level = below
    return found


def _numpy_advice(walk: Walk, np: Any, arr: Any) -> list[Advice]:
    line = walk.sites.main_line([arr])
    caveats = []
    if arr.dtype.kind in "iu":
        narrow = _narrow_int(np, arr)
        if narrow is None:
            return []
        confidence = "review"
        caveats.append(
            f"numpy {narrow.name} arithmetic wraps around silently (int8 100 + 100 is -56): "
            "widen before sums and products (a.sum(dtype=numpy.int64))"
        )
    elif arr.dtype == np.float64:
        narrow = np.dtype(np.float32)
        error = _float_error(np, arr)
        if error == float("inf"):
            return []
        confidence = "changes results"
        caveats.append(
            f"float32 keeps about 7 significant digits: the largest relative error on "
            f"these values is {error:.1e}"
        )
    else:
        return []
    # verify every value survives (integers) by converting chunk by chunk
    if arr.dtype.kind in "iu":
        for part in _chunks(arr):
            if not np.array_equal(part.astype(narrow), part):
                return []
    now = sys.getsizeof(arr)
    after = now - arr.nbytes + arr.size * narrow.itemsize
    return [
        walk.advice(
            line,
            arr,
            kind="dtype",
            type=f"numpy.ndarray {arr.dtype.name}{list(arr.shape)}",
            count=1,
            bytes=now,
            after=after,
            fix=f"use dtype=numpy.{narrow.name} (a.astype(numpy.{narrow.name}))",
            caveats=caveats,
            measured="all",
            confidence=confidence,
        )
    ]


def _pandas_advice(walk: Walk, frame: Any) -> list[Advice]:
    pd = sys.modules.get("pandas")
    if pd is None:
        return []
    changes: list[str] = []
    now = after = 0
    try:
        for name in list(frame.columns):
            col = frame[name]
            if not isinstance(col, pd.Series) or len(col) < 1000:
                continue
            before = _column_bytes(col)
            target, alt = _pandas_column(pd, col)
            if alt is None:
                continue
            size = int(alt.memory_usage(deep=True, index=False))
            if size < before:
                changes.append(f"{name!r}: {target!r}")
                now += before
                after += size
    except Exception:  # a frame we cannot read as expected: no advice, never an error
        return []
    if not changes or not walk.worth(now - after):
        return []
    caveats = [
        "category columns compare and sort by their categories; new values need cat.add_categories",
        "a narrower integer column wraps around silently past its range: widen before sums",
    ]
    return [
        walk.advice(
            walk.sites.main_line([frame]),
            frame,
            kind="dtype",
            type=f"pandas.DataFrame ({len(changes)} columns)",
            count=1,
            bytes=now,
            after=after,
            fix="df = df.astype({" + ", ".join(changes) + "})",
            caveats=caveats,
            measured="all",
            confidence="review",
        )
    ]


def _column_bytes(col: Any) -> int:
    """What a column's data takes: its array and, for objects, the items only
    it refers to (pandas' ``memory_usage(deep=True)`` counts a string shared by
    many rows once per row)."""
    values = col.array.to_numpy() if col.dtype.kind == "O" else None
    if values is None:
        return int(col.memory_usage(deep=False, index=False))
    return int(values.nbytes) + owned_bytes(values, values, atoms=False) - sys.getsizeof(values)


def _pandas_column(pd: Any, col: Any) -> tuple[str, Any]:
    """The narrower dtype of a column and the column converted (None: none)."""
    kind = col.dtype.kind
    if kind == "O":
        # only strings: counting distinct values of the program's own objects
        # would run their __hash__ and __eq__
        if set(map(type, col.array.to_numpy())) != {str}:
            return "", None
        distinct = col.nunique(dropna=False)
        if distinct <= len(col) // 2:
            return "category", col.astype("category")
        return "", None
    if kind in "iu":
        down = pd.to_numeric(col, downcast="unsigned" if col.min() >= 0 else "integer")
        return str(down.dtype), down if down.dtype.itemsize < col.dtype.itemsize else None
    return "", None
