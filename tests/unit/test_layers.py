"""The engine's compiled extensions are private to it (import-linter cannot see them: they
are not Python source), and the shared model stays free of products and the engine."""

from __future__ import annotations

import ast
from pathlib import Path

import memtrim

PACKAGE = Path(memtrim.__file__).resolve().parent
EXTENSIONS = {"_engine", "_sampler", "_objects", "_testing"}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names (with imported names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts), path)
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_the_walker_sees_the_whole_package():
    names = {name for name, _ in _modules()}
    assert {"memtrim.engine.hooks", "memtrim.run.session", "memtrim.model.files"} <= names


def test_only_the_engine_imports_its_extensions():
    offenders = [
        (name, imported)
        for name, path in _modules()
        if not name.startswith("memtrim.engine")
        for imported in _imports(path)
        if imported.split(".")[:2] == ["memtrim", "engine"]
        and len(imported.split(".")) > 2
        and imported.split(".")[2] in EXTENSIONS
    ]
    assert offenders == []


def test_the_test_helpers_are_not_in_the_production_extension():
    from memtrim.engine import load

    engine = load()
    assert not [name for name in dir(engine) if name.startswith("test_")]
