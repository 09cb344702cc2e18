"""Sites, amounts and findings: the shared vocabulary, on plain data."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from memtrim.model import Amount, Finding, Site, relative_path


def test_paths_are_relative_to_the_root_then_to_sys_path():
    sys_path = ["/usr/lib/python3.12", "/usr/lib/python3.12/site-packages", ""]
    assert relative_path("/app/pkg/mod.py", "/app", sys_path) == "pkg/mod.py"
    assert relative_path("/app/pkg/mod.py", "/app/", sys_path) == "pkg/mod.py"
    assert relative_path("/usr/lib/python3.12/json/decoder.py", "/app", sys_path) == (
        "json/decoder.py"
    )
    deep = "/usr/lib/python3.12/site-packages/numpy/core.py"
    assert relative_path(deep, "/app", sys_path) == "numpy/core.py"  # the deepest entry
    assert relative_path("/elsewhere/x.py", "/app", sys_path) == "/elsewhere/x.py"
    assert relative_path("/application/x.py", "/app") == "/application/x.py"
    assert relative_path("<frozen os>", "/", sys_path) == "<frozen os>"
    assert relative_path("<string>", None) == "<string>"


def test_a_site_knows_its_line_within_its_function():
    site = Site.at("/app/pkg/mod.py", "Loader.load", 42, 40, "data = read()", root="/app")
    assert site == Site("pkg/mod.py", "/app/pkg/mod.py", "Loader.load", 42, 2, "data = read()")
    assert site.key == ("pkg/mod.py", "Loader.load", 2)
    assert str(site) == "pkg/mod.py:42 (Loader.load)"


def test_sites_match_across_checkouts_and_edits_above_the_function():
    here = Site.at("/home/a/proj/app.py", "main", 12, 10, root="/home/a/proj")
    there = Site.at("/tmp/ci/proj/app.py", "main", 30, 28, root="/tmp/ci/proj")
    assert here != there
    assert here.key == there.key == ("app.py", "main", 2)


def test_a_site_without_its_first_line_is_keyed_by_its_line():
    site = Site.at("/app/x.py", "f", 7, None, root="/app")
    assert site.line_in_function is None
    assert site.key == ("x.py", "f", 7)
    assert Site.at("/app/x.py", "f", 7, 0, root="/app").line_in_function is None


def test_amounts_and_findings_are_small_frozen_records():
    amount = Amount(1024, 3)
    assert (amount.bytes, amount.count) == (1024, 3)
    assert Amount(5) == Amount(5, 0)
    finding = Finding("line", Site("a.py", "/a.py", "f", 1), "peak", amount)
    assert finding.exact and finding.name == ""
    for record, field in ((amount, "bytes"), (finding, "metric"), (finding.where, "line")):
        assert not hasattr(record, "__dict__")  # slots
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, 1)


@pytest.mark.parametrize("metric", ["peak", "at_exit", "allocated", "increment", "live"])
def test_the_metrics(metric):
    assert Finding("heap", None, metric, Amount(1)).metric == metric


def test_an_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric 'leaks'"):
        Finding("heap", None, "leaks", Amount(1))


def test_the_model_imports_no_engine_and_no_product():
    import memtrim.model

    package = Path(memtrim.model.__file__).parent
    imported = set()
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    ours = {name for name in imported if name.split(".")[0] == "memtrim"}
    assert all(name.startswith("memtrim.model") for name in ours), ours
