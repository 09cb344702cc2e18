"""Shared fixtures: run memtrim on scripts written to a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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
