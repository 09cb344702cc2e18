"""The public API: every exported name resolves, and type checkers see the same names."""

from __future__ import annotations

import ast
import inspect

import pytest

import memtrim


def _type_checking_imports() -> dict[str, str]:
    tree = ast.parse(inspect.getsource(memtrim))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
    )
    return {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_type_checkers_see_every_export_from_its_module():
    assert _type_checking_imports() == memtrim._EXPORTS


@pytest.mark.parametrize("name", memtrim.__all__)
def test_every_export_resolves_to_what_its_module_defines(name):
    module = __import__(memtrim._EXPORTS[name], fromlist=[name])
    assert getattr(memtrim, name) is getattr(module, name)


def test_public_callables_and_classes_are_documented():
    missing = [name for name in memtrim.__all__ if not inspect.getdoc(getattr(memtrim, name))]
    assert missing == []


def test_unknown_names_say_so():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        memtrim.nope  # noqa: B018


def test_all_lists_exactly_the_exports():
    assert sorted(memtrim.__all__) == sorted(memtrim._EXPORTS)
