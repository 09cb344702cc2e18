"""Sites, amounts and findings: the one shape every result is read in.

A :class:`Site` names a line of code so that it can be matched across two
checkouts or an edit of the lines above its function: by its path relative to
a recorded root (or to the ``sys.path`` entry it was imported from), its
function's qualified name and its line within that function. An
:class:`Amount` is bytes and a count (of blocks, or objects). A
:class:`Finding` is one figure of a result: what it is, where, which metric,
the amount, and whether it is exact or estimated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

#: The metrics a finding can be about: live at the peak, still allocated at
#: exit, allocated over a run, a change (of a line, a phase, a census diff),
#: and live when a snapshot (a census) was taken.
METRICS = ("peak", "at_exit", "allocated", "increment", "live")


def relative_path(abspath: str, root: str | None = None, sys_path: Iterable[str] = ()) -> str:
    """``abspath`` relative to ``root`` if it lies under it, else to the
    deepest ``sys_path`` entry holding it (``json/decoder.py``), else as is.

    Pseudo-files (``<string>``, ``<frozen os>``) are returned unchanged.
    """
    if not abspath or abspath.startswith("<"):
        return abspath
    for base in ([root] if root else []) + sorted(
        (entry for entry in sys_path if entry), key=len, reverse=True
    ):
        prefix = base.rstrip(os.sep) + os.sep
        if abspath.startswith(prefix) and len(abspath) > len(prefix):
            return abspath[len(prefix) :]
    return abspath


@dataclass(frozen=True, slots=True)
class Site:
    """One line of code.

    ``path`` is relative to the recorded root (see :func:`relative_path`),
    ``abspath`` the file as it was run; ``line_in_function`` is ``line`` minus
    the first line of the function (``None`` when that is not known).
    """

    path: str
    abspath: str
    qualname: str
    line: int
    line_in_function: int | None = None
    source: str = ""

    @classmethod
    def at(
        cls,
        abspath: str,
        qualname: str,
        line: int,
        first_line: int | None = None,
        source: str = "",
        root: str | None = None,
        sys_path: Iterable[str] = (),
    ) -> Site:
        """The site of ``abspath:line`` in ``qualname`` (first line ``first_line``)."""
        offset = None if not first_line else line - first_line
        return cls(relative_path(abspath, root, sys_path), abspath, qualname, line, offset, source)

    @property
    def key(self) -> tuple[str, str, int]:
        """What matches this line in another run: path, function, line within it
        (the line itself when its function's first line is not known)."""
        offset = self.line if self.line_in_function is None else self.line_in_function
        return (self.path, self.qualname, offset)

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.qualname})"


@dataclass(frozen=True, slots=True)
class Amount:
    """Bytes and a count (blocks or objects; 0 when not counted)."""

    bytes: int
    count: int = 0


@dataclass(frozen=True, slots=True)
class Finding:
    """One figure of a result.

    ``what`` is a short kind (``line``, ``heap``, ``rss``, ``phase``,
    ``type``...), ``where`` the line it is charged to (``None`` for a
    process-wide figure), ``metric`` one of :data:`METRICS`, ``exact`` False
    for an estimate (sampled). ``name`` tells apart findings of one kind that
    have no site (a phase's name, a type's name, a thread).
    """

    what: str
    where: Site | None
    metric: str
    amount: Amount
    exact: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}: use one of {', '.join(METRICS)}")
