"""What keeps growing: ``cache`` (unbounded ``functools.lru_cache`` /
``functools.cache``) and ``leak`` (module-level containers that grew from
one walk to the next and hold a lot at the end).

Sizes are retained sizes (what clearing would free, shared objects not
counted), from the engine's walk. A bounded cache keeps ``maxsize`` entries
of the average size seen: computed, not built.
"""

from __future__ import annotations

import gc
from typing import Any

from memtrim.advice.rules.walk import Walk
from memtrim.engine import walks
from memtrim.model.advice import Advice
from memtrim.objects import sizing

BOUNDED = 128


def _retained_bytes(obj: Any) -> int:
    """What clearing ``obj`` would free (no ``gc.collect()`` first, unlike
    ``memtrim.retained``: a collection would run the program's finalizers)."""
    return walks.retained(obj, *sizing.walker_args(sizing.Options.parse({})))[0]


def _cache_dict(wrapper: Any) -> dict | None:
    found = [r for r in gc.get_referents(wrapper) if type(r) is dict]
    # the wrapper refers to its cache dict and to its __dict__ (attributes,
    # __wrapped__): the cache is the one that is not the __dict__
    own = getattr(type(wrapper), "__dict__", {}).get("__dict__")
    attrs = own.__get__(wrapper) if own is not None else None
    found = [d for d in found if d is not attrs]
    return found[0] if len(found) == 1 else None


def cache_rule(walk: Walk) -> list[Advice]:
    """Unbounded lru_cache wrappers holding much -> a bound."""
    out = []
    for wrapper in walk.heap.caches:
        try:
            params = wrapper.cache_parameters()
        except Exception:
            continue
        if params.get("maxsize") is not None:
            continue
        cache = _cache_dict(wrapper)
        if not cache or len(cache) <= BOUNDED:
            continue
        now = _retained_bytes(cache)
        after = now * BOUNDED // len(cache)
        if not walk.worth(now - after):
            continue
        values = list(cache.values())
        line = walk.sites.main_line(values)
        name = getattr(getattr(wrapper, "__wrapped__", None), "__qualname__", "?")
        out.append(
            walk.advice(
                line,
                cache,
                kind="cache",
                type=f"lru_cache of {name}",
                count=len(cache),
                bytes=now,
                after=after,
                fix=f"@functools.lru_cache(maxsize={BOUNDED}) on {name} (or clear it: "
                f"{name}.cache_clear())",
                caveats=[
                    f"{len(cache):,} results are kept: calls with arguments that left the "
                    "cache compute again",
                    f"the size after keeps {BOUNDED} entries of the average size seen",
                ],
                measured="computed",
                confidence="review",
            )
        )
    return out


_CONTAINERS = (list, dict, set)


def module_containers(walk: Walk) -> dict[int, tuple[str, Any]]:
    """The program's module-level lists, dicts and sets: id -> (name, container)."""
    found = {}
    for modname, namespace in walk.heap.modules:
        if modname.startswith("memtrim") or modname in ("sys", "builtins"):
            continue
        for key, value in list(namespace.items()):
            if type(value) in _CONTAINERS and type(key) is str and not key.startswith("__"):
                found[id(value)] = (f"{modname}.{key}", value)
    return found


def leak_rule(walk: Walk, grew: dict[int, int]) -> list[Advice]:
    """Module-level containers that grew over the run -> bound or clear them.

    ``grew``: id -> how many walks saw the container longer than the one before.
    """
    out = []
    for key, (name, container) in module_containers(walk).items():
        if grew.get(key, 0) < 2 or not container:
            continue
        now = _retained_bytes(container)
        if not walk.worth(now):
            continue
        items = list(container.values()) if type(container) is dict else list(container)
        line = walk.sites.main_line(items[-1000:])
        out.append(
            walk.advice(
                line,
                container,
                kind="leak",
                type=f"{type(container).__name__} {name}",
                count=len(container),
                bytes=now,
                after=0,
                fix=f"bound {name} (collections.deque(maxlen=N), an LRU dict) or clear it when "
                "its items are done with",
                caveats=[
                    "it grew at every look and holds this much at the end: check that "
                    "nothing needs the old items"
                ],
                measured="all",
                confidence="review",
                holder=[name],
            )
        )
    return out
