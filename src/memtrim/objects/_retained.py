"""What an object keeps alive on its own, from reference counts.

1. Walk what ``obj`` reaches under the sizing rules (the ``asizeof`` set, the
   *members*).
2. ``R`` is the members plus every object all of whose references come from
   ``R`` (an object reached from ``R`` whose references from ``R`` add up to
   its reference count: a frame object inside a generator, a function's code
   and constants...).
3. A member whose reference count is higher than the references it gets from
   ``R`` is kept alive by something else (a module global, another
   container, a local variable of any thread, a C static, an immortal
   object's huge count), and so is everything it refers to in ``R``.
4. The other members would be freed with ``obj``.

References are what ``tp_traverse`` reports (``gc.get_referents``), plus what
it leaves out: the str keys of a combined dict, the parts of a code object. A
reference nothing reports only makes its target look held, never freed.
This runs in C (``walks.retained``); the tests compare it with the same
computation in Python (``tests/oracles/retained.py``).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

from memtrim.engine import walks
from memtrim.objects import sizing


@dataclass(frozen=True)
class Retained:
    """``retained``: bytes freed if the object went away; ``reachable``: its asizeof."""

    retained: int
    reachable: int
    objects: int  # how many objects would be freed (inline values count with their instance)


def retained(obj: Any, opts: sizing.Options | None = None) -> Retained:
    """Bytes only ``obj`` keeps alive, next to its reachable (asizeof) size."""
    opts = opts or sizing.Options()
    gc.collect()  # unreachable cycles still refer to things; they are not holders
    return Retained(*walks.retained(obj, *sizing.walker_args(opts)))
