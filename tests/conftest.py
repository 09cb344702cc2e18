"""Shared fixtures: run memtrim on scripts written to a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memtrim

# Subprocesses import memtrim from wherever this test run imports it.
_SRC = str(Path(memtrim.__file__).resolve().parent.parent)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that must import this memtrim."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SRC, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class Runner:
    """Writes scripts into ``tmp_path`` and runs them, with or without memtrim."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def write(self, source: str, name: str = "script.py") -> Path:
        path = self.tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    def python(self, *args: str, stdin: str | None = None, timeout: float = 120) -> Any:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            cwd=self.tmp_path,
            env=subprocess_env(),
            input=stdin,
            timeout=timeout,
        )

    def memtrim(self, *args: str, **kwargs: Any) -> Any:
        return self.python("-m", "memtrim", *args, **kwargs)

    def profile_json(self, source: str, *options: str) -> dict[str, dict[str, Any]]:
        """Run ``source`` under ``python -m memtrim --json``; tables by function name."""
        script = self.write(source)
        out = self.tmp_path / "out.json"
        proc = self.memtrim("--json", str(out), *options, str(script))
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
        return {
            f["function"]: {line["lineno"]: line for line in f["lines"]} for f in data["functions"]
        }


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


# ------------------------------------------------- what a test must not leave


def _engine_state() -> dict[str, Any]:
    """What memtrim may install process-wide, as comparable values."""
    from memtrim.engine import _sampler, hooks, load

    engine = load()
    state: dict[str, Any] = {
        "the allocator hooks installed": engine.heap_installed(),
        "the native allocator hooks installed": engine.native_installed(),
        "a recording running": engine.tree_running(),
        "heap listeners registered": engine.heap_listeners(),
        "threading.Thread._set_ident patched": threading.Thread._set_ident,  # type: ignore[attr-defined]
        "threading.Thread._delete patched": threading.Thread._delete,  # type: ignore[attr-defined]
        "a threading trace hook set": getattr(threading, "_trace_hook", None),
        "a threading profile hook set": getattr(threading, "_profile_hook", None),
    }
    if getattr(_sampler, "SUPPORTED", 0):
        state["a native sampler thread alive"] = _sampler.active_count()
    if hasattr(sys, "monitoring"):
        state["a memtrim sys.monitoring tool registered"] = [
            tool for tool in range(6) if sys.monitoring.get_tool(tool) == "memtrim"
        ]
    # (tracemalloc sets its own on 3.13 and never removes it: not memtrim's)
    state["memtrim's CPython reference tracer set"] = engine.tree_reftracer()
    state["_holders"] = hooks.holders()
    return state


def _more(before: Any, after: Any) -> bool:
    # Counts and flags: only a rise is a leak (a test may stop what an earlier
    # one, or a module fixture, started); anything else: any change.
    if isinstance(before, (bool, int)):
        return after > before
    if isinstance(before, list):
        return bool(set(after) - set(before))
    return after is not before


def _clean_up(before: dict[str, Any]) -> None:
    # Put back what the test left, so that one leak does not fail every later test.
    from memtrim.engine import calltree, hooks, load

    engine = load()
    if calltree.is_recording() and not before["a recording running"]:
        calltree.clear()
    while len(hooks.holders()) > len(before["_holders"]):
        hooks._held[-1].release()
    threading.Thread._set_ident = before["threading.Thread._set_ident patched"]  # type: ignore[attr-defined]
    threading.Thread._delete = before["threading.Thread._delete patched"]  # type: ignore[attr-defined]
    if engine.native_installed() and not before["the native allocator hooks installed"]:
        engine.native_uninstall()
    if engine.heap_installed() and not before["the allocator hooks installed"]:
        engine.heap_uninstall()


@pytest.fixture(autouse=True)
def _nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves memtrim's process-wide machinery in place.

    Compared with the state before the test, so that what a module-scoped
    fixture keeps for the module's lifetime is not counted against each test.
    """
    before = _engine_state()
    yield
    after = _engine_state()
    left = [
        f"{what} ({before[what]!r} before, {after[what]!r} after)"
        for what in before
        if not what.startswith("_") and _more(before[what], after.get(what))
    ]
    if left:
        holders = after["_holders"][len(before["_holders"]) :]
        _clean_up(before)
        detail = f"; new hooks handles held by {holders}" if holders else ""
        pytest.fail(f"{request.node.nodeid} left behind: {'; '.join(left)}{detail}", pytrace=False)
