"""Every command's --help works and fits an 80-column terminal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memtrim.commands import available


@pytest.mark.parametrize("command", [None, *available()])
def test_help_fits_80_columns(command):
    env = {**os.environ, "COLUMNS": "80"}
    argv = [sys.executable, "-m", "memtrim", *([command] if command else []), "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "usage:" in proc.stdout
    too_long = [line for line in proc.stdout.splitlines() if len(line) > 80]
    assert too_long == []


def test_help_follows_a_wider_terminal():
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "memtrim", "--help"], capture_output=True, text=True, env=env
    )
    run_line = next(line for line in proc.stdout.splitlines() if line.startswith("  run "))
    assert run_line.endswith("stack by stack.")  # one line when there is room
