"""Run a program's code at the bottom of the stack, as the interpreter would."""

from __future__ import annotations

from types import CodeType
from typing import Any

from memtrim.engine import load

_engine = load()


def run_detached(code: CodeType, namespace: dict[str, Any]) -> None:
    """Execute ``code`` in ``namespace`` with no caller frame below it.

    The frames of memtrim's command line are hidden from the program (its first
    frame has no caller) and do not count against its recursion limit; its
    exceptions propagate.
    """
    _engine.run_detached(code, namespace)
