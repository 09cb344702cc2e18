"""The pytest plugin, run by pytest itself (``pytester``, in a subprocess).

The plugin comes through memtrim's ``pytest11`` entry point: the test runs
below load it as any project with memtrim installed would, with no flag.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest

from memtrim.pytest_plugin import parse_size

pytest_plugins = ["pytester"]

MIB = 1024 * 1024
# What pytest and its other plugins allocate inside the call phase counts too: a
# few hundred bytes of pytest's own, and more from plugins that import or set up on
# a test's first call (pytest-asyncio, when installed, some 300 KiB)
SLACK = 512 * 1024


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_it=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def line_of(pytester: pytest.Pytester, text: str) -> int:
    """The line of test_it.py that holds ``text`` (the first one)."""
    lines = (pytester.path / "test_it.py").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def exact(text: str, label: str) -> int:
    """The byte figure after ``label`` in the failure message: ``... (1,234 B)``."""
    found = re.search(label + r" [\d.]+ \w+ \(([\d,]+) B\)", text)
    assert found, text
    return int(found.group(1).replace(",", ""))


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("24 MB", 24 * MIB),  # pytest-memray reads MB as MiB
        ("24MB", 24 * MIB),
        ("1.5 GiB", int(1.5 * 1024**3)),
        ("512 KB", 512 * 1024),
        ("512 kib", 512 * 1024),
        ("100", 100),
        ("100 B", 100),
        (4096, 4096),
    ],
)
def test_sizes_read_as_pytest_memray_reads_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten MB", "1 XB", "-1 MB", None, True, -5])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_limit_memory_fails_at_its_peak_and_names_the_line(pytester):
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_big():
            data = bytearray(3 * 1024 * 1024)
            del data

        @pytest.mark.limit_memory("4 MB")
        def test_under():
            data = bytearray(3 * 1024 * 1024)
        """,
    )
    result.assert_outcomes(failed=1, passed=1)
    text = result.stdout.str()
    peak = exact(text, "but allocated")
    # the bytearray (3 MiB and its header), freed before the end: the peak counts it,
    # and pytest's own few hundred bytes around the call
    assert 3 * MIB + 57 <= peak < 3 * MIB + SLACK
    assert exact(text, "Test was limited to") == MIB
    line = line_of(pytester, "data = bytearray(3 * 1024 * 1024)")
    assert re.search(rf"3\.0 MiB\s+test_it\.py:{line} \(test_big\)", text), text
    assert "The stack that held the most at the peak" in text
    assert "test_under" not in text.split("short test summary")[0].split("FAILURES")[1]


def test_limit_leaks_counts_what_stays_and_filters_by_stack(pytester):
    result = run(
        pytester,
        """
        import pytest

        KEEP = []

        def keep(n):
            KEEP.append(bytearray(n))

        @pytest.mark.limit_leaks("1 MB")
        def test_leaky():
            keep(2 * 1024 * 1024)

        @pytest.mark.limit_leaks("1 MB")
        def test_freed():
            data = bytearray(2 * 1024 * 1024)
            del data

        def not_keep(stack):
            return not any(frame.function == "keep" for frame in stack.frames)

        @pytest.mark.limit_leaks("1 MB", filter_fn=not_keep)
        def test_filtered():
            keep(2 * 1024 * 1024)
        """,
    )
    result.assert_outcomes(failed=1, passed=2)
    text = result.stdout.str()
    leaked = exact(text, "of leaks but left")
    assert 2 * MIB + 57 <= leaked < 2 * MIB + SLACK
    assert f"test_it.py:{line_of(pytester, 'KEEP.append(bytearray(n))')} (keep)" in text


def test_garbage_from_before_the_test_does_not_hide_its_leak(pytester):
    # The collection after the body (garbage is not a leak) also frees garbage made
    # before the test: 4 MiB of it must not take the 2 MiB leak below zero (the leak
    # is the lines' sum, not the heap's level, which that collection lowers).
    result = run(
        pytester,
        """
        import gc
        import pytest

        KEEP = []

        def make_garbage():
            cycle = [bytearray(4 * 1024 * 1024)]
            cycle.append(cycle)  # only a collection frees it

        @pytest.fixture
        def garbage():
            gc.disable()  # (no automatic collection before the plugin's own)
            make_garbage()
            yield
            gc.enable()

        @pytest.mark.limit_leaks("1 MB")
        def test_leaky(garbage):
            KEEP.append(bytearray(2 * 1024 * 1024))
        """,
    )
    result.assert_outcomes(failed=1)
    leaked = exact(result.stdout.str(), "of leaks but left")
    assert 2 * MIB + 57 <= leaked < 2 * MIB + SLACK


def test_a_project_default_applies_and_a_marker_overrides_it(pytester):
    pytester.makeini("[pytest]\nmemtrim_limit = 1 MB\n")
    result = run(
        pytester,
        """
        import pytest

        def test_default():
            data = bytearray(2 * 1024 * 1024)

        @pytest.mark.limit_memory("8 MB")
        def test_override():
            data = bytearray(2 * 1024 * 1024)
        """,
    )
    result.assert_outcomes(failed=1, passed=1)
    assert "test_default" in result.stdout.str().split("FAILURES")[1]
    # the option says the same, and wins over the ini file
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--memtrim-limit", "16 MB")
    result.assert_outcomes(passed=2)


def test_the_leak_limit_option(pytester):
    result = run(
        pytester,
        """
        KEEP = []

        def test_leaky():
            KEEP.append(bytearray(2 * 1024 * 1024))
        """,
        "--memtrim-leak-limit",
        "1M",
    )
    result.assert_outcomes(failed=1)


def test_a_malformed_size_is_a_usage_error_naming_the_test(pytester):
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.limit_memory("ten MB")
        def test_bad():
            pass
        """,
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_it.py::test_bad" in result.stderr.str()
    assert "'ten MB'" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--memtrim-limit", "lots")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'lots'" in result.stderr.str()


def test_the_tests_own_failure_stays_and_memtrim_adds_its_part(pytester):
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_both():
            data = bytearray(2 * 1024 * 1024)
            assert 1 == 2, "its own reason"
        """,
    )
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "its own reason" in text
    assert "memtrim" in text and "but allocated" in text


def test_unlimited_tests_run_without_hooks_and_the_table(pytester):
    result = run(
        pytester,
        """
        import pytest
        from memtrim.engine import hooks

        def test_untouched():
            assert not hooks.is_installed()

        @pytest.mark.parametrize("n", [1, 4])
        def test_sizes(n):
            data = bytearray(n * 1024 * 1024)
        """,
    )
    result.assert_outcomes(passed=3)
    assert "memtrim:" not in result.stdout.str()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--memtrim", "--memtrim-top", "2"
    )
    result.assert_outcomes(failed=1, passed=2)  # --memtrim measures every test: hooks are in
    table = result.stdout.str().split("memtrim: the tests with the highest peaks")[1]
    rows = [line for line in table.splitlines() if " peak, " in line]
    assert len(rows) == 2
    assert "test_sizes[4]" in rows[0] and "test_sizes[1]" in rows[1]
    assert rows[0].strip().startswith("4.0 MiB peak")


BASELINE_TEST = """
import os

def test_grows():
    data = bytearray(int(os.environ["GROW_MB"]) * 1024 * 1024)

def test_steady():
    data = bytearray(1024 * 1024)
"""


def test_a_baseline_is_written_then_compared(pytester, monkeypatch):
    pytester.makepyfile(test_it=BASELINE_TEST)
    base = pytester.path / "memory.json"
    monkeypatch.setenv("GROW_MB", "1")
    args = ("-p", "no:cacheprovider", "--memtrim-baseline", str(base))
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=2)
    data = json.loads(base.read_text())
    assert data["format"] == "memtrim-pytest-baseline" and data["version"] == 1
    grows = data["tests"]["test_it.py::test_grows"]
    assert MIB + 57 <= grows["peak"] < MIB + SLACK
    line = line_of(pytester, 'data = bytearray(int(os.environ["GROW_MB"])')
    assert any(f"test_it.py:{line} " in where for where in grows["lines"])
    # the same code again: no increase
    result = pytester.runpytest_subprocess(*args, "--memtrim-fail-on-increase", "10")
    result.assert_outcomes(passed=2)
    # one test's peak triples: it fails, naming the line that grew; the file stays
    before = base.read_text()
    monkeypatch.setenv("GROW_MB", "3")
    result = pytester.runpytest_subprocess(*args, "--memtrim-fail-on-increase", "10")
    result.assert_outcomes(failed=1, passed=1)
    text = result.stdout.str()
    assert "Peak grew from 1.0 MiB" in text and "more than 10 %" in text
    assert re.search(rf"\+\s*2\.0 MiB\s+test_it\.py:{line} \(test_grows\)", text), text
    assert base.read_text() == before


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": "other"}',
        '{"format": "memtrim-pytest-baseline", "version": 99}',
        '{"format": "memtrim-pytest-baseline", "version": 1, "tests": {"t": {"peak": "x"}}}',
    ],
)
def test_a_bad_baseline_is_one_clear_line(pytester, content):
    pytester.makepyfile(test_it="def test_one():\n    pass\n")
    base = pytester.path / "memory.json"
    base.write_text(content)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--memtrim-baseline", str(base)
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--memtrim-baseline" in result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_fail_on_increase_needs_a_baseline(pytester):
    pytester.makepyfile(test_it="def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--memtrim-fail-on-increase", "5"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.skipif(
    importlib.util.find_spec("xdist") is None, reason="pytest-xdist is not installed"
)
def test_xdist_workers_limits_and_the_table(pytester):
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_big():
            data = bytearray(3 * 1024 * 1024)

        @pytest.mark.parametrize("n", [1, 2, 4])
        def test_sizes(n):
            data = bytearray(n * 1024 * 1024)
        """,
        "-n",
        "2",
        "--memtrim",
    )
    result.assert_outcomes(failed=1, passed=3)
    text = result.stdout.str()
    assert re.search(r"but allocated 3\.\d MiB", text), text
    # the workers' figures reached the controller's table
    table = text.split("memtrim: the tests with the highest peaks")[1]
    rows = [line for line in table.splitlines() if " peak, " in line]
    assert [r.split()[-1] for r in rows] == [
        "test_it.py::test_sizes[4]",
        "test_it.py::test_big",
        "test_it.py::test_sizes[2]",
        "test_it.py::test_sizes[1]",
    ]


def test_a_baseline_catches_grown_leaks(pytester, monkeypatch):
    pytester.makepyfile(
        test_it="""
        import os

        KEEP = []

        def test_keeps():
            KEEP.append(bytearray(int(os.environ["KEEP_MB"]) * 1024 * 1024))
        """
    )
    base = pytester.path / "memory.json"
    args = ("-p", "no:cacheprovider", "--memtrim-baseline", str(base))
    monkeypatch.setenv("KEEP_MB", "1")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    monkeypatch.setenv("KEEP_MB", "1")
    pytester.runpytest_subprocess(*args, "--memtrim-fail-on-increase", "10").assert_outcomes(
        passed=1
    )
    # the peak and the leak both triple: both are said
    monkeypatch.setenv("KEEP_MB", "3")
    result = pytester.runpytest_subprocess(*args, "--memtrim-fail-on-increase", "10")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "Peak grew from 1.0 MiB" in text
    # what the test left is net of what the collection after it freed of older garbage
    # (other plugins' first-test set-up): about 1 MiB before, about 3 MiB now
    leaks = re.search(
        r"Leaks grew from .* \(([\d,]+) B\) in the baseline to .* \(([\d,]+) B\)", text
    )
    assert leaks, text
    before, after = (int(x.replace(",", "")) for x in leaks.groups())
    assert 900 * 1024 < before <= MIB + SLACK and 3 * MIB - 128 * 1024 < after <= 3 * MIB + SLACK


def test_a_capture_per_test_opens_with_memtrim_report(pytester):
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.parametrize("n", [1, 3])
        def test_sizes(n):
            data = bytearray(n * 1024 * 1024)
        """,
        "--memtrim-dir",
        "caps",
    )
    result.assert_outcomes(passed=2)
    from memtrim.run import capture as capture_file

    files = sorted((pytester.path / "caps").iterdir())
    assert [f.name for f in files] == [
        "test_it.py_test_sizes_1.memtrim",
        "test_it.py_test_sizes_3.memtrim",
    ]
    capture = capture_file.read(str(files[1]))
    assert capture.meta["test"] == "test_it.py::test_sizes[3]"
    assert 3 * MIB + 57 <= capture.peak_bytes < 3 * MIB + SLACK
    report = pytester.run(sys.executable, "-m", "memtrim", "report", str(files[1]))
    assert report.ret == 0
    assert "test_sizes" in report.stdout.str() and "3.0 MiB" in report.stdout.str()


@pytest.mark.skipif(
    importlib.util.find_spec("pytest_asyncio") is None, reason="pytest-asyncio is not installed"
)
def test_async_tests_are_limited_like_the_others(pytester):
    result = run(
        pytester,
        """
        import asyncio
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.limit_memory("1 MB")
        async def test_big():
            await asyncio.sleep(0)
            data = bytearray(3 * 1024 * 1024)
            await asyncio.sleep(0)

        @pytest.mark.asyncio
        @pytest.mark.limit_memory("8 MB")
        async def test_under():
            data = bytearray(3 * 1024 * 1024)
        """,
    )
    result.assert_outcomes(failed=1, passed=1)
    text = result.stdout.str()
    # the buffer, and the event loop pytest-asyncio makes inside the call (some 300 KiB)
    assert 3 * MIB + 57 <= exact(text, "but allocated") < 3 * MIB + 2 * SLACK
    line = line_of(pytester, "data = bytearray(3 * 1024 * 1024)")
    assert f"test_it.py:{line} (test_big)" in text


def test_under_memtrim_run_the_limits_hold_without_lines(pytester):
    pytester.makepyfile(
        test_it="""
        import pytest

        @pytest.mark.limit_memory("1 MB")
        def test_big():
            data = bytearray(3 * 1024 * 1024)
        """
    )
    result = pytester.run(
        sys.executable,
        "-m",
        "memtrim",
        "run",
        "-q",
        "-o",
        "run.memtrim",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "test_it.py",
    )
    assert result.ret == 1  # the test failed: pytest's status, passed on by memtrim run
    text = result.stdout.str()
    assert re.search(r"but allocated 3\.\d MiB", text), text
    assert "lines not known: a memtrim recording of the whole run is on" in text
    assert (pytester.path / "run.memtrim").exists()
