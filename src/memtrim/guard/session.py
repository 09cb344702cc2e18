"""``memtrim.limit``: a memory budget for a block of code, held at the allocation.

    with memtrim.limit("200 MB"):
        load()

    @memtrim.limit("200 MB")
    def load(): ...

The budget is the peak of what the block allocates above the heap's level
when it starts, every thread counted. The Python allocation that would take
the block past it is refused: it raises ``MemoryError`` where it happens, and
the block ends with :class:`MemoryLimitExceeded` (a ``MemoryError``) whose
message names the lines that held the most at that moment (when the block is
recorded: nothing else records the process). ``on_exceed="warn"`` refuses
nothing: a :class:`MemoryLimitWarning` says, when the block ends, by how much
its peak passed the budget. Limits nest: the tightest one holds.

C libraries' allocations (``malloc``) count toward the level but are never
refused (a library may not survive a NULL): the next Python allocation is.
"""

from __future__ import annotations

import functools
import os
import threading
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from memtrim.engine import calltree, hooks
from memtrim.model.units import human, parse_size

F = TypeVar("F", bound=Callable[..., Any])
_TOP_LINES = 5
_OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # memtrim's files
_active: list[limit] = []  # the limits whose blocks run, outermost first
_lock = threading.Lock()


class MemoryLimitExceeded(MemoryError):
    """A block under :func:`memtrim.limit` would have passed its budget."""


class MemoryLimitWarning(ResourceWarning):
    """A block under ``memtrim.limit(..., on_exceed="warn")`` passed its budget."""


def _size(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("the budget must be a size ('200 MB') or a number of bytes, not a bool")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"the budget must be positive, not {value}")
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"the budget must be a size ('200 MB') or bytes, not {type(value).__name__}"
        )
    return parse_size(value)


def _arm() -> None:
    """The engine's limit: the tightest of the active blocks that refuse."""
    ends = [lim._base + lim.budget for lim in _active if lim.on_exceed == "raise"]
    hooks.set_limit(min(ends) if ends else 0)


class limit:
    """A memory budget for a block (``with``) or for every call (decorator).

    ``budget``: ``"200 MB"`` (binary units) or bytes. ``on_exceed``:
    ``"raise"`` (default: the crossing allocation fails, the block raises
    :class:`MemoryLimitExceeded`) or ``"warn"``. After the block, ``peak`` is
    its peak in bytes.
    """

    def __init__(self, budget: int | str, on_exceed: str = "raise") -> None:
        self.budget = _size(budget)
        if on_exceed not in ("raise", "warn"):
            raise ValueError(f"on_exceed must be 'raise' or 'warn', not {on_exceed!r}")
        self.on_exceed = on_exceed
        self.peak = 0
        self._base = 0
        self._handle: Any = None
        self._recording = False
        self._watch = -1
        self._refused = 0

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def limited(*args: Any, **kwargs: Any) -> Any:
            with limit(self.budget, self.on_exceed):  # a fresh one per call: recursion nests
                return func(*args, **kwargs)

        return limited  # type: ignore[return-value]

    def __enter__(self) -> limit:
        if self._handle is not None:
            raise RuntimeError("this limit is already in use; make one per block")
        self._handle = hooks.acquire("memtrim.limit")
        try:
            with _lock:
                if not calltree.is_recording() and not _active:
                    calltree.start(False, 0)  # the lines of the message
                    self._recording = True
                self._base = hooks.level()
                self._watch = hooks.watch_begin()
                self._refused = hooks.limit_state()[0]
                _active.append(self)
                _arm()
        except BaseException:
            self._handle.release()
            self._handle = None
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        refused, level, asked = hooks.limit_state()
        with _lock:
            self.peak = max(hooks.watch_end(self._watch) - self._base, 0)
            if self in _active:
                _active.remove(self)
            _arm()
            lines = self._lines() if self._recording else []
        handle, self._handle = self._handle, None
        handle.release()
        crossed = refused > self._refused
        if self.on_exceed == "warn":
            if self.peak > self.budget:
                warnings.warn(MemoryLimitWarning(self._message(self.peak, 0, lines)), stacklevel=2)
            return
        if crossed and kind is not None and issubclass(kind, MemoryError):
            if isinstance(value, MemoryLimitExceeded):
                return  # an inner block's: it says it all
            message = self._message(max(level - self._base, 0), asked, lines)
            raise MemoryLimitExceeded(message) from value

    def _lines(self) -> list[tuple[int, str]]:
        """The lines that held the most at the block's peak (its recording's)."""
        try:
            calltree.stop()
            raw = calltree.snapshot()
        finally:
            calltree.clear()
        per_line: dict[tuple[str, str, int], int] = {}
        for (_parent, slot, line), stats in zip(raw["nodes"], raw["stats"], strict=True):
            if slot >= 0 and stats[4] > 0:
                filename, qualname, _first = raw["slots"][slot]
                if filename.startswith(_OWN):
                    continue  # memtrim's own few bytes, entering and leaving the block
                key = (filename, qualname, line)
                per_line[key] = per_line.get(key, 0) + stats[4]
        ranked = sorted(per_line.items(), key=lambda kv: -kv[1])[:_TOP_LINES]
        floor = ranked[0][1] // 100 if ranked else 0  # lines with 1 % of the largest's bytes
        return [(size, f"{f}:{n} ({q})") for (f, q, n), size in ranked if size >= floor]

    def _message(self, used: int, asked: int, lines: list[tuple[int, str]]) -> str:
        if asked:
            text = (
                f"memory limit {human(self.budget)} ({self.budget:,} B): the block held "
                f"{human(used)} ({used:,} B) and an allocation asked for {asked:,} B more"
            )
        else:
            text = (
                f"memory limit {human(self.budget)} ({self.budget:,} B): the block's peak was "
                f"{human(used)} ({used:,} B)"
            )
        if lines:
            text += "; held the most: " + "; ".join(f"{where} {human(s)}" for s, where in lines)
        return text
