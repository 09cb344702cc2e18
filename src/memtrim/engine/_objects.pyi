"""Native walkers for memtrim's object sizing, census and why()."""

from collections.abc import Callable
from typing import Any

def sizes(
    objs: list[Any],
    classify: Callable[[Any], tuple[int, tuple[Any, ...]] | None],
    describe: Callable[[Any, int], tuple[int, list[Any]]],
    mask: int,
    limit: int,
    fast: bool,
    bytes_leaf: bool,
) -> list[int]: ...
def census(objs: list[Any], skip: list[Any]) -> dict[type, tuple[int, int, int]]: ...
def path(roots: list[Any], target: Any, skip: list[Any]) -> list[Any] | None: ...
