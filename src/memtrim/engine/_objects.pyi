"""Native walkers for memtrim's object sizing, census, retained and why()."""

from collections.abc import Callable
from typing import Any

Classify = Callable[[Any], tuple[int, tuple[Any, ...]] | None]
Describe = Callable[[Any, int], tuple[int, list[Any]]]

class Walker:
    def __init__(
        self,
        classify: Classify,
        describe: Describe,
        standin: type,
        mask: int,
        limit: int,
        footprint: bool,
        bytes_leaf: bool,
    ) -> None: ...
    def exclude(self, objs: list[Any]) -> None: ...
    def claim(self, obj: Any) -> bool: ...
    def sizes(self, objs: list[Any]) -> list[int]: ...
    def deep(self, objs: list[Any], depth: int) -> list[int]: ...

def census(
    objs: list[Any], skip: list[Any], skip_globals: list[dict[str, Any]]
) -> dict[type, tuple[int, int, int]]: ...
def retained(
    obj: Any,
    classify: Classify,
    describe: Describe,
    standin: type,
    mask: int,
    limit: int,
    footprint: bool,
    bytes_leaf: bool,
) -> tuple[int, int, int]: ...
def path(roots: list[Any], target: Any, skip: list[Any]) -> list[Any] | None: ...
def frame_values(gen: Any) -> list[tuple[str, Any]] | None: ...
