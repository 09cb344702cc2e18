"""Strings: ``intern`` (many equal str/bytes objects) and, for big sets of
strings kept for lookups, ``trie`` (marisa-trie), ``bloom`` and ``hll``.

Every string is looked at (a full pass over a million strings takes a tenth
of a second): samples lie for anything that depends on distinct values or
shared prefixes. A trie is measured by building it when marisa-trie is
installed (``tobytes()`` is its size: its memory lives outside Python's
allocators, where ``sys.getsizeof`` sees 32 bytes); without it, the keys
front-coded (sorted, each stored without the prefix it shares with the one
before) give the size a trie stays within. Bloom filter and HyperLogLog
sizes follow from their formulas.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from typing import Any

from memtrim.advice.rules.numbers import owned_bytes
from memtrim.advice.rules.walk import Walk
from memtrim.model.advice import Advice

#: sets smaller than this are not offered a trie, a Bloom filter or an HLL
MIN_SET = 10_000
BLOOM_ERROR = 0.01
HLL_REGISTERS = 1 << 12  # datasketches' lg_k=12: about 1.6 % error


def intern_rule(walk: Walk) -> list[Advice]:
    """Equal strings stored many times -> one object per value."""
    strs = [s for s in walk.heap.strs if len(s) > 1]
    if walk.sites.recording:
        # strings with no known line were made before the recording: not the program's
        groups = [(line, group) for line, group in walk.sites.by_line(strs) if line is not None]
    else:  # no line known: the strings of each big list or tuple are a group
        groups = [(None, [x for x in seq if type(x) in (str, bytes)]) for seq in walk.heap.seqs]
    out = []
    for line, group in groups:
        if len(group) < 2:
            continue
        first: dict[Any, Any] = {}
        dup_bytes = dup_count = total = 0
        getsizeof = sys.getsizeof
        for s in group:
            size = getsizeof(s)
            total += size
            if first.setdefault(s, s) is not s:
                dup_bytes += size
                dup_count += 1
        if not walk.worth(dup_bytes):
            continue
        tp = type(group[0]).__name__
        caveats = [
            f"{dup_count:,} of {len(group):,} objects repeat {len(first):,} distinct values",
            "code that compares these strings with `is` would see different results",
        ]
        if sys.version_info >= (3, 12):
            caveats.append(
                "sys.intern'ed strings are immortal on 3.12+ (never freed): prefer the dict pool"
            )
        fix = (
            "pool equal values: s = pool.setdefault(s, s) with one dict pool"
            " (or sys.intern(s), or a pandas 'category' column)"
        )
        out.append(
            walk.advice(
                line,
                group[0],
                kind="intern",
                type=tp,
                count=len(group),
                bytes=total,
                after=total - dup_bytes,
                fix=fix,
                caveats=caveats,
                measured="all",
                confidence="exact",
            )
        )
    return out


def _front_coded(keys: list[str]) -> int:
    """Bytes of the keys sorted and front-coded (UTF-8, a length byte each)."""
    total = 0
    prev = b""
    for key in sorted(k.encode("utf-8", "surrogatepass") for k in keys):
        common = 0
        limit = min(len(prev), len(key))
        while common < limit and prev[common] == key[common]:
            common += 1
        total += len(key) - common + 2
        prev = key
    return total


def _trie_size(keys: list[str]) -> tuple[int, str]:
    """(bytes, how measured) of a marisa trie of ``keys``."""
    if importlib.util.find_spec("marisa_trie") is not None:
        try:
            import marisa_trie

            return len(marisa_trie.Trie(keys).tobytes()), "all"
        except Exception:
            pass
    return _front_coded(keys), "computed"


def lookup_rules(walk: Walk) -> list[Advice]:
    """Big sets of strings -> a trie (exact), a Bloom filter or an HLL (approximate)."""
    out: list[Advice] = []
    for s in walk.heap.sets:
        if len(s) < MIN_SET:
            continue
        if set(map(type, s)) != {str}:
            continue
        now = owned_bytes(s, s)  # before `keys` refers to them too
        if not walk.worth(now // 2):
            continue
        keys = list(s)
        line = walk.sites.main_line([s])
        out += _set_advice(walk, line, s, keys, now)
    return out


def _set_advice(walk: Walk, line: Any, s: Any, keys: list[str], now: int) -> list[Advice]:
    n = len(keys)
    tp = f"{type(s).__name__} of str"
    out = []
    trie, measured = _trie_size(keys)
    note = (
        ""
        if measured == "all"
        else " (pip install marisa-trie; the size is the keys front-coded, which a trie "
        "stays within)"
    )
    out.append(
        walk.advice(
            line,
            s,
            kind="trie",
            type=tp,
            count=n,
            bytes=now,
            after=trie,
            fix="keys = marisa_trie.Trie(keys); `k in keys` works as before" + note,
            caveats=[
                "a marisa trie is read-only: adding a key means building it again",
                "lookups cost about 1 µs instead of 0.05 µs",
            ],
            measured=measured,
            confidence="review",
        )
    )
    bits = math.ceil(-n * math.log(BLOOM_ERROR) / math.log(2) ** 2)
    out.append(
        walk.advice(
            line,
            s,
            kind="bloom",
            type=tp,
            count=n,
            bytes=now,
            after=bits // 8 + 1,
            fix=f"rbloom.Bloom({n}, {BLOOM_ERROR}) filled with the keys (pip install rbloom)",
            caveats=[
                f"about {BLOOM_ERROR:.0%} of absent keys test present (false positives)",
                "the keys cannot be listed or removed",
            ],
            measured="computed",
            confidence="changes results",
        )
    )
    if type(s) is set:
        out.append(
            walk.advice(
                line,
                s,
                kind="hll",
                type=tp,
                count=n,
                bytes=now,
                after=HLL_REGISTERS,
                fix="if the set only counts distinct values: datasketches.hll_sketch(12)"
                " (pip install datasketches)",
                caveats=["counts distinct values within about 1.6 %; no membership test"],
                measured="computed",
                confidence="changes results",
            )
        )
    return out
