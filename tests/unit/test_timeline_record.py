"""`memtrim record` on plain data: exit statuses, file names, the summary line."""

from __future__ import annotations

import os
import re

import pytest

from memtrim.commands import _output, record
from memtrim.model import files
from memtrim.run import lifecycle
from memtrim.timeline.model import Sample, Timeline

MIB = 2**20


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (None, 0),
        (SystemExit(), 0),
        (SystemExit(None), 0),
        (SystemExit(True), 1),
        (SystemExit(False), 0),
        (SystemExit(3), 3),
        (SystemExit(256), 0),
        (SystemExit(-1), 255),
        (SystemExit(2**40), 0),  # what the system reports, as under plain python
        (SystemExit(2**40 + 7), 7),
        (SystemExit(2**70), 255),  # too big for a C long: CPython exits with -1
        (SystemExit("bye"), 1),
        (KeyboardInterrupt(), 130),
        (ValueError(), 1),
    ],
)
def test_exit_status_is_the_one_the_system_reports(error, status):
    got = lifecycle.exit_status(error)
    assert got == status and type(got) is int


def test_default_names_hold_the_pid():
    name = record.default_output(0.0, pid=4242)
    assert re.fullmatch(r"memtrim_\d{8}_\d{6}_4242\.mtrec", name)
    assert record.default_output(0.0, pid=1) != name  # same second, another process
    assert record.default_output().endswith(f"_{os.getpid()}.mtrec")


def test_write_new_never_overwrites(tmp_path):
    path = tmp_path / "run.mtrec"
    assert _output.write_new(str(path), "one") == str(path)
    assert _output.write_new(str(path), "two") == str(tmp_path / "run_1.mtrec")
    assert _output.write_new(str(path), "three") == str(tmp_path / "run_2.mtrec")
    assert [p.read_text() for p in sorted(tmp_path.iterdir())] == ["one", "two", "three"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".memtrim-")]
    assert (path.stat().st_mode & 0o777) == 0o666 & ~files._umask()


SAMPLES = (Sample(0.0, 10 * MIB), Sample(0.1, 20 * MIB, None, ((5, 30 * MIB),)))


def test_summary_is_the_higher_of_the_mark_and_the_samples():
    # a mark read through another counter can trail a sample by a few pages
    trailing = Timeline(samples=SAMPLES, pid=1, peak_rss=19 * MIB)
    assert record.summary(trailing) == "2 samples, peak RSS 20.0 MiB"
    above = Timeline(samples=SAMPLES, pid=1, peak_rss=25 * MIB)
    assert record.summary(above) == "2 samples, peak RSS 25.0 MiB"
    assert record.summary(Timeline(samples=(), pid=1)) == "0 samples"


def test_summary_with_children_says_both():
    followed = Timeline(samples=SAMPLES, pid=1, peak_rss=20 * MIB, peak_total=70 * MIB)
    assert record.summary(followed) == (
        "2 samples, peak RSS 20.0 MiB (own), 70.0 MiB with children"
    )
