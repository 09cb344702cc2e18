"""Pure-Python oracles of the native object walks (``memtrim.engine.walks``).

memtrim walks the object graph and reads CPython's layout in C only
(``memtrim.engine._objects``). These modules are the same walks in Python,
moved here from ``memtrim.objects`` when the C became the only
implementation; the tests run memtrim through both and compare the figures:

* :mod:`tests.oracles.sizing`: ``Walker``, the deep sizing walk;
* :mod:`tests.oracles.retained`: ``retained``, from reference counts;
* :mod:`tests.oracles.census`: ``census``, every live object by type;
* :mod:`tests.oracles.why`: ``path``, a shortest reference chain;
* :mod:`tests.oracles.layout`: ``frame_values``, a generator's frame (ctypes).

Each oracle takes the native function's arguments and returns what it
returns, so :func:`use` swaps it in for the attribute of
``memtrim.engine.walks`` of the same name (the objects product looks those
up at call time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.oracles import census, layout, retained, sizing, why

ORACLES = {
    "Walker": sizing.Walker,
    "retained": retained.retained,
    "census": census.census,
    "path": why.path,
    "frame_values": layout.frame_values,
}
SIZING = ("Walker", "retained")  # what ``sizing`` walks: asizeof, asized, retained
ALL = tuple(ORACLES)


def use(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Route the named walks of ``memtrim.engine.walks`` to their oracles
    (all of them without names) until ``monkeypatch`` is undone."""
    from memtrim.engine import walks

    for name in names or ALL:
        monkeypatch.setattr(walks, name, ORACLES[name])


@contextlib.contextmanager
def python(*names: str) -> Iterator[None]:
    """:func:`use` for a block."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use(monkeypatch, *names)
        yield
