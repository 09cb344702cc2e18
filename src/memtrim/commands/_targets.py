"""``-f module.function``: profile functions of modules the script imports.

A dotted name that names no function of the script is read as a path into a
module: ``json.dumps``, ``pkg.mod.func``, ``pkg.mod.Class.method``. The
function is profiled as soon as its module has been imported: at once if it
already is, otherwise right after the module's code has run (an import hook
watches the modules the names start with, and steps aside while the module
runs, so the module sees its usual loader).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import sys
import threading
from collections.abc import Callable
from types import CodeType, ModuleType
from typing import Any

from memtrim.lines.session import code_of

Found = Callable[[CodeType], None]


class ModuleTargets:
    """Dotted ``-f`` names, resolved when their module is imported."""

    def __init__(self, names: list[str], found: Found) -> None:
        self._pending = list(dict.fromkeys(names))
        self._found = found
        self._problems: dict[str, str] = {}
        self._lock = threading.RLock()
        self._finder = _Watcher(self)

    def modules(self) -> set[str]:
        """Module names the pending targets may live in (every dotted prefix)."""
        out = set()
        for name in self._pending:
            parts = name.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts)))
        return out

    def start(self) -> None:
        """Resolve what is importable now; watch imports for the rest."""
        self.check()
        if self._pending:
            sys.meta_path.insert(0, self._finder)

    def stop(self) -> None:
        """Stop watching imports."""
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)

    def check(self) -> None:
        """Resolve every pending name whose module is now in ``sys.modules``."""
        with self._lock:
            for name in list(self._pending):
                found = _resolve(name)
                if found is None:
                    continue
                self._pending.remove(name)
                try:
                    code = code_of(found)
                except TypeError:
                    self._problems[name] = f"not a Python function ({type(found).__name__})"
                    continue
                self._found(code)
            if not self._pending:
                self.stop()

    def problems(self) -> list[str]:
        """One line per name that was never profiled, and why."""
        lines = [f"-f {name}: {why}" for name, why in self._problems.items()]
        lines += [f"-f {name}: no such function was imported" for name in self._pending]
        return lines


def _resolve(name: str) -> Any:
    """The object ``name`` points at, through the longest imported module prefix."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:cut]))
        if not isinstance(module, ModuleType):
            continue
        obj: Any = module
        for attr in parts[cut:]:
            obj = _attribute(obj, attr)
            if obj is None:
                break
        if obj is not None:
            return obj.fget if isinstance(obj, property) else obj
    return None


def _attribute(obj: Any, attr: str) -> Any:
    # Read without running code: no module __getattr__, no descriptors (a
    # class's staticmethod stays one, for code_of to look through).
    if isinstance(obj, ModuleType):
        return vars(obj).get(attr)
    try:
        return inspect.getattr_static(obj, attr)
    except AttributeError:
        return None


class _Watcher(importlib.abc.MetaPathFinder):
    """Finds the watched modules with the other finders and wraps their loader."""

    def __init__(self, targets: ModuleTargets) -> None:
        self._targets = targets

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname not in self._targets.modules():
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _CheckingLoader(spec.loader, spec, self._targets)
            return spec
        return None


class _CheckingLoader(importlib.abc.Loader):
    """Runs the module with its own loader back in place, then resolves targets."""

    def __init__(self, loader: Any, spec: importlib.machinery.ModuleSpec, targets: Any) -> None:
        self._loader = loader
        self._spec = spec
        self._targets = targets

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._spec.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        self._targets.check()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
