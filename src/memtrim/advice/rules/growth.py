"""What keeps growing: ``cache`` (unbounded ``functools.lru_cache`` /
``functools.cache``) and ``leak`` (module-level containers that grew from
one walk to the next and hold a lot at the end).

Sizes are retained sizes (what clearing would free, shared objects not
counted), from the engine's walk. A bounded cache keeps ``maxsize`` entries
of the average size seen: computed, not built.
"""

from __future__ import annotations

import gc
import sys
import sysconfig
import types
from typing import Any

from memtrim.advice.rules.walk import Walk
from memtrim.engine import walks
from memtrim.model.advice import Advice
from memtrim.objects import _layout, sizing

BOUNDED = 128


def _retained_bytes(obj: Any) -> int:
    """What clearing ``obj`` would free (no ``gc.collect()`` first, unlike
    ``memtrim.retained``: a collection would run the program's finalizers)."""
    return walks.retained(obj, *sizing.walker_args(sizing.Options.parse({})))[0]


def _cache_dict(wrapper: Any) -> dict | None:
    found = [r for r in gc.get_referents(wrapper) if type(r) is dict]
    # the wrapper refers to its cache dict and to its __dict__ (attributes,
    # __wrapped__): the cache is the one that is not the __dict__
    own = _layout.tattr(type(wrapper), "__dict__").get("__dict__")
    attrs = own.__get__(wrapper) if own is not None else None
    found = [d for d in found if d is not attrs]
    return found[0] if len(found) == 1 else None


def _wrapped_name(wrapper: Any) -> str:
    """The cached function's qualified name, read without running user code."""
    own = _layout.tattr(type(wrapper), "__dict__").get("__dict__")
    namespace = own.__get__(wrapper) if own is not None else None
    wrapped = namespace.get("__wrapped__") if type(namespace) is dict else None
    if type(wrapped) is types.FunctionType:
        return wrapped.__qualname__
    if wrapped is not None:
        return f"{_layout.tattr(type(wrapped), '__qualname__')} object"
    return "?"


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
        name = _wrapped_name(wrapper)
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
_MODULE_DICT = types.ModuleType.__dict__["__dict__"]
_STDLIB = sysconfig.get_paths().get("stdlib", "") or "\0"


def _program_module(name: str, namespace: dict) -> bool:
    """A module of the program or of a library it installed: not memtrim's,
    not the standard library's (its caches are bounded)."""
    if name.startswith("memtrim") or name in ("sys", "builtins", "__mp_main__"):
        return False
    path = namespace.get("__file__")
    return not (type(path) is str and path.startswith(_STDLIB) and "site-packages" not in path)


def module_containers() -> dict[int, tuple[str, Any]]:
    """The program's module-level lists, dicts and sets: id -> (name, container).
    Read from ``sys.modules`` without running any module's code."""
    found = {}
    for modname, module in list(sys.modules.items()):
        if type(module) is not types.ModuleType or type(modname) is not str:
            continue
        namespace = _MODULE_DICT.__get__(module)
        if type(namespace) is not dict or not _program_module(modname, namespace):
            continue
        for key, value in list(namespace.items()):
            if type(key) is not str or key.startswith("__"):
                continue
            if type(value) in _CONTAINERS:
                found[id(value)] = (f"{modname}.{key}", value)
            elif isinstance(value, type) and _layout.tattr(value, "__module__") == modname:
                _class_containers(found, f"{modname}.{key}", value)
    return found


def _class_containers(found: dict[int, tuple[str, Any]], name: str, cls: type) -> None:
    """A class's own attributes that are lists, dicts or sets (a registry, a cache)."""
    for key, value in list(_layout.tattr(cls, "__dict__").items()):
        if type(key) is str and not key.startswith("__") and type(value) in _CONTAINERS:
            found[id(value)] = (f"{name}.{key}", value)


def growing(history: list[int]) -> bool:
    """Lengths seen at successive looks, the last at the end: it grew at each
    of the last two looks (a table loaded once stops growing; a leak does not)."""
    return len(history) >= 3 and history[-3] < history[-2] < history[-1]


def leak_rule(walk: Walk, history: dict[int, list[int]]) -> list[Advice]:
    """Module-level containers that kept growing to the end -> bound or clear them.

    ``history``: id -> the container's length at each look (the last: now).
    """
    out = []
    for key, (name, container) in module_containers().items():
        if not growing(history.get(key, [])) or not container:
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
                fix=f"bound {name} (collections.deque(maxlen=N), an LRU dict) or clear it "
                "when its items are done with",
                caveats=[
                    f"it grew at each of the last looks ({' < '.join(map(str, history[key][-3:]))}"
                    " items) and holds this much at the end: check that nothing needs the old "
                    "items"
                ],
                measured="all",
                confidence="review",
                holder=[name],
            )
        )
    return out
