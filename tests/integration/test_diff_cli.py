"""`memtrim diff`: two real runs of a program, compared line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memtrim.run import capture as capture_file
from memtrim.run.capture import sites

PROGRAM = """
def load(n):
    return [bytearray(1000) for _ in range(n)]


def main():
    keep = load(N)
    tmp = [x for x in range(100_000)]
    del tmp
    return keep


KEEP = main()
"""


def two_runs(runner: Any, base_n: int, new_n: int, edit: str = "") -> tuple[Path, Path]:
    """The program run twice from two directories (same file name), the second
    with ``new_n`` buffers and ``edit`` put above it."""
    out = []
    for name, n, above in (("base", base_n, ""), ("new", new_n, edit)):
        folder = runner.tmp_path / name
        folder.mkdir()
        (folder / "prog.py").write_text(above + f"N = {n}\n" + PROGRAM)
        capture = runner.tmp_path / f"{name}.memtrim"
        proc = runner.memtrim("run", "-q", "-o", str(capture), str(folder / "prog.py"))
        assert proc.returncode == 0, proc.stderr
        out.append(capture)
    return out[0], out[1]


def line_bytes(capture: Path, view: str, text: str) -> int:
    found = capture_file.read(str(capture))
    return sum(s.bytes for s in sites(found, view) if text in found.site(s.frame).source)


def diff_json(runner: Any, base: Path, new: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    out = runner.tmp_path / "diff.json"
    proc = runner.memtrim("diff", str(base), str(new), "--json", str(out), "--force", *args)
    return proc, json.loads(out.read_text())


def test_the_line_that_grew_is_first_with_its_exact_change(runner):
    base, new = two_runs(runner, 2000, 6000, edit="# an edit above moves every line down\n")
    proc, data = diff_json(runner, base, new)
    assert proc.returncode == 0, proc.stderr
    peak = data["views"]["peak"]
    first = peak["lines"][0]
    # matched across the edit: one line (not one gone and one new), by its source text
    assert first["source"] == "return [bytearray(1000) for _ in range(n)]"
    assert first["path"] == "prog.py" and first["lineno"] == 5  # the new run's line
    expected_base = line_bytes(base, "peak", "bytearray(1000)")
    expected_new = line_bytes(new, "peak", "bytearray(1000)")
    assert (first["base"], first["new"]) == (expected_base, expected_new)
    assert first["change"] == expected_new - expected_base
    assert first["change"] >= 4000 * (1000 + 57)  # 4,000 more buffers of 1,000 bytes
    # the line that did not change is not listed
    assert not any("range(100_000)" in line["source"] for line in peak["lines"])
    assert "prog.py:5" in proc.stdout and "+" in proc.stdout


def test_the_threshold_fails_a_grown_peak_or_leak(runner):
    base, new = two_runs(runner, 2000, 6000)
    proc, data = diff_json(runner, base, new, "--threshold", "10%")
    assert proc.returncode == 1
    assert data["failed"] == ["peak", "at_exit"]
    assert "grew more than the threshold" in proc.stderr
    proc, _ = diff_json(runner, base, new, "--threshold", "1000%")
    assert proc.returncode == 0
    proc, _ = diff_json(runner, base, new, "--threshold", "100M")
    assert proc.returncode == 0
    proc, _ = diff_json(runner, new, base, "--threshold", "0%")  # it shrank: fine
    assert proc.returncode == 0


def test_two_json_reports_diff_too(runner):
    base, new = two_runs(runner, 2000, 3000)
    reports = []
    for capture in (base, new):
        report = capture.with_suffix(".json")
        proc = runner.memtrim("report", str(capture), "--json", str(report))
        assert proc.returncode == 0, proc.stderr
        reports.append(report)
    proc, data = diff_json(runner, reports[0], reports[1])
    assert proc.returncode == 0, proc.stderr
    assert data["base"]["complete"] is False
    first = data["views"]["at_exit"]["lines"][0]
    assert first["source"].startswith("return [bytearray(1000)")
    assert first["change"] >= 1000 * (1000 + 57)
    assert "lists only its top lines" in proc.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), (b"not a capture", "capture"), (b'{"format": "x"}', "not a memtrim")],
)
def test_bad_input_is_one_line(runner, content, message):
    good, _ = two_runs(runner, 10, 10)
    bad = runner.tmp_path / "bad.memtrim"
    if content is not None:
        bad.write_bytes(content)
    proc = runner.memtrim("diff", str(good), str(bad))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_threshold(runner):
    good, _ = two_runs(runner, 10, 10)
    proc = runner.memtrim("diff", str(good), str(good), "--threshold", "lots")
    assert proc.returncode == 2 and "invalid threshold" in proc.stderr


HOSTILE = """
KEEP = [bytearray(1000) for _ in range(N)] if "</td><x-pwn>" else None
"""


def test_the_html_page_is_one_file_with_the_programs_text_escaped(runner):
    captures = []
    for name, n in (("base", 1000), ("new", 3000)):
        folder = runner.tmp_path / name
        folder.mkdir()
        (folder / "prog.py").write_text(f"N = {n}\n" + HOSTILE)
        capture = runner.tmp_path / f"{name}.memtrim"
        proc = runner.memtrim("run", "-q", "-o", str(capture), str(folder / "prog.py"))
        assert proc.returncode == 0, proc.stderr
        captures.append(str(capture))
    page = runner.tmp_path / "diff.html"
    proc = runner.memtrim("diff", *captures, "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # the program's text is there, escaped: no element of theirs, no script at all
    assert "&lt;/td&gt;&lt;x-pwn&gt;" in text
    assert "<x-pwn>" not in text and "<script" not in text
    assert "http://" not in text and "https://" not in text  # nothing to load
    assert "differential flame graph" in text and "<svg" in text
    assert 'class="up"' in text  # the grown line, in red
