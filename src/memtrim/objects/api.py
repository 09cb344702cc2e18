"""Public API for objects: deep sizes, retained sizes, heap census, why alive.

``asizeof``, ``asizesof``, ``asized`` and ``flatsize`` take Pympler's names,
options and (for ordinary objects) numbers; see ``docs/objects.md`` for where
memtrim deliberately differs.
"""

from __future__ import annotations

import gc
import sys
from typing import IO, Any

from memtrim.objects import census as _census
from memtrim.objects import referrers as _referrers
from memtrim.objects import sizing as _sizing
from memtrim.objects._retained import Retained
from memtrim.objects._retained import retained as _retained
from memtrim.objects.census import Census, GrowthRow
from memtrim.objects.referrers import Chain
from memtrim.objects.render import text as _report

__all__ = [
    "Asized",
    "Census",
    "Chain",
    "GrowthRow",
    "Retained",
    "Why",
    "asized",
    "asizeof",
    "asizesof",
    "census",
    "flatsize",
    "growth",
    "retained",
    "why",
]


class Asized(_sizing.SizedNode):
    """Size information of one object: ``name``, ``size`` (deep), ``flat``, ``refs``."""

    __slots__ = ()

    def format(
        self,
        format: str = _report.SIZE_FORMAT,
        depth: int = -1,
        order_by: str = "size",
        indent: str = "",
    ) -> str:
        """The article's layout: ``repr size=N flat=M``, children indented, largest first.

        ``depth`` limits the levels printed (-1: all), ``order_by`` is
        ``"size"``, ``"flat"`` or ``"name"``.
        """
        _check_format(format, depth, indent)
        return _report.asized_text(self, format, depth, order_by, indent)

    def __str__(self) -> str:
        return f"size {self.size!r}, flat {self.flat!r}, refs[{len(self.refs)}], name {self.name!r}"


def _check_format(format: Any, depth: Any, indent: Any) -> None:
    if type(format) is not str:
        raise TypeError(f"format must be a str, not {type(format).__name__}")
    if type(indent) is not str:
        raise TypeError(f"indent must be a str, not {type(indent).__name__}")
    if not isinstance(depth, int) or isinstance(depth, bool):
        raise TypeError(f"depth must be an int, not {type(depth).__name__}")
    try:
        format % {"name": "", "size": 0, "flat": 0}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad format {format!r}: {exc}") from None


def asizeof(*objs: Any, **opts: Any) -> int:
    """Combined deep size in bytes of ``objs``, shared objects counted once.

    Options (Pympler's names): ``align=8``, ``clip=80``, ``code=False``,
    ``frames=False``, ``ignored=True``, ``infer=False``, ``limit=None``
    (Pympler: 100), ``all=False`` (True, with no ``objs``: every object the
    GC tracks), and ``footprint=False`` (True: allocator footprint instead of
    Pympler figures). Pympler's ``above``, ``cutoff``, ``derive``, ``detail``,
    ``stats`` and ``stream`` are accepted and change nothing (docs/objects.md).
    """
    options = _sizing.Options.parse(opts, extra=("all",))
    if not objs and opts.get("all") is True:
        everything = gc.get_objects()
        return sum(_sizing.totals(tuple(everything), options))
    return sum(_sizing.totals(objs, options))


def asizesof(*objs: Any, **opts: Any) -> tuple[int, ...]:
    """Deep size of each object; objects already counted for an earlier one count 0."""
    options = _sizing.Options.parse(opts)
    sizes = _sizing.totals(objs, options)
    first: dict[int, int] = {}
    for obj, size in zip(objs, sizes, strict=True):
        first.setdefault(id(obj), size)
    return tuple(first[id(obj)] for obj in objs)


def asized(*objs: Any, detail: int = 0, **opts: Any) -> Asized | tuple[Asized, ...]:
    """Size tree(s) with named referents down to ``detail`` levels.

    One object gives one :class:`Asized`, several give a tuple. ``.format()``
    prints Pympler's layout.
    """
    if not isinstance(detail, int) or isinstance(detail, bool):
        raise TypeError(f"detail must be an int, not {type(detail).__name__}")
    if detail < 0:
        raise ValueError(f"detail must be >= 0, not {detail}")
    options = _sizing.Options.parse(opts)
    trees = tuple(_sizing.sized_trees(objs, options, detail, node=Asized))
    return trees[0] if len(trees) == 1 else trees


def flatsize(obj: Any, align: int = 0, **opts: Any) -> int:
    """Flat size of one object (no referents), like Pympler's (unaligned by default).

    Any object has one, as in Pympler: functions, methods, classes and code
    objects give their ``sys.getsizeof`` too (``asizeof`` skips them by default).
    """
    options = _sizing.Options.parse({**opts, "align": align}, extra=("save",))
    return _sizing.flat_of_any(obj, options)


def retained(obj: Any, **opts: Any) -> Retained:
    """Bytes that would be freed if ``obj`` went away, next to its reachable size.

    ``.retained`` counts only what nothing else refers to; ``.reachable`` is
    ``asizeof(obj)``. A child shared with anything outside ``obj`` is not retained.
    """
    return _retained(obj, _sizing.Options.parse(opts))


def census() -> Census:
    """Every live object grouped by type (count, bytes, largest).

    ``print(c)`` gives a text table, ``rich.print(c)`` a rich table,
    ``c.rows()``/``c.as_dict()`` plain data, ``c2 - c1`` what grew.
    """
    return _census.take()


_last: list[Census | None] = [None]  # fixed size: never grows between two censuses


def growth(limit: int = 25, file: IO[str] | None = None) -> list[GrowthRow]:
    """Print (and return) what grew since the previous call, by type, in count and bytes.

    The first call prints the largest types, like objgraph's ``show_growth``.
    """
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit!r}")
    now = _census.take()
    before = _last[0]
    rows = now - before if before is not None else now.diff(Census({}))
    _last[0] = now
    grown = [r for r in rows if r.count_delta > 0 or r.bytes_delta > 0][:limit]
    print(_report.growth_text(grown, limit), file=file or sys.stdout)
    return grown


class Why(list):
    """The chains found by :func:`why` (a list of :class:`Chain`), printable."""

    def __str__(self) -> str:
        return _report.chains_text(self)

    def dot(self) -> str:
        """Graphviz DOT source of the chains."""
        return _report.chains_dot(self)


def why(obj: Any, chains: int = 1) -> Why:
    """Shortest reference chain(s) from a root to ``obj``, shortest first.

    Roots are module globals (``app.CACHE``), class attributes
    (``app.Config.REGISTRY``), ``gc.garbage``, the local variables of every
    thread's frames and ``threading.Thread`` objects with their target and
    args. ``print(why(x))`` shows e.g.
    ``app.CACHE -> dict['users'] -> list[3] -> <User object>``. Names that are
    ``obj`` itself (your own variable) come after the chains through other
    objects.
    """
    if not isinstance(chains, int) or isinstance(chains, bool):
        raise TypeError(f"chains must be an int, not {type(chains).__name__}")
    if chains < 1:
        raise ValueError(f"chains must be >= 1, not {chains}")
    return Why(_referrers.why(obj, chains, skip_frames=1))
