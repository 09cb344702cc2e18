"""Run a program's code at the bottom of the stack, as the interpreter would."""

from __future__ import annotations

import os
from types import CodeType, TracebackType
from typing import Any

from memtrim.engine import load

_engine = load()
# memtrim's own files: their frames are not the program's
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def run_detached(code: CodeType, namespace: dict[str, Any]) -> None:
    """Execute ``code`` in ``namespace`` with no caller frame below it.

    The frames of memtrim's command line are hidden from the program (its first
    frame has no caller) and do not count against its recursion limit; its
    exceptions propagate.
    """
    _engine.run_detached(code, namespace)


def user_traceback(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without memtrim's own frames (its runner, wrappers, magics)."""
    kept = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            kept.append(tb)
        tb = tb.tb_next
    rebuilt = None
    for entry in reversed(kept):
        rebuilt = TracebackType(rebuilt, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return rebuilt
