"""Pieces of the line profiler that work on plain data: folding, -f targets, paths."""

from __future__ import annotations

import os
import sys
import textwrap
import types

from memtrim.commands import _script, _targets
from memtrim.engine import tracer
from memtrim.ipython import MemitResult

MIB = 2**20


def compiled(source: str, tmp_path, name: str = "mod.py") -> types.CodeType:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return compile(path.read_text(), str(path), "exec")


def function_code(module: types.CodeType, name: str) -> types.CodeType:
    return next(c for c in module.co_consts if isinstance(c, types.CodeType) and c.co_name == name)


def test_comprehension_lines_fold_into_their_first_line(tmp_path):
    module = compiled(
        """
        def f(y):
            a = [x
                 for x in y]
            b = {k: v
                 for k, v in zip(
                    y, y)}
            c = sum(n for n in
                    y)
            d = [1, 2,
                 3]
            return a, b, c, d
        """,
        tmp_path,
    )
    folded = tracer.folded_lines(function_code(module, "f"))
    assert folded == [(4, 3), (6, 5), (7, 5), (9, 8)]  # not the list display (lines 10-11)


def test_folds_of_nested_code_methods_and_decorators(tmp_path):
    module = compiled(
        """
        def outer(y):
            def inner(z):
                return [
                    w for w in z]
            return inner(y)
        class K:
            @staticmethod
            def m(y):
                return {a: [b for b in
                            y]
                        for a in y}
        def one(y): return [x for x in y]
        def deco(f): return f
        @deco([d for d in
               range(2)])
        def decorated(y):
            return y
        """,
        tmp_path,
    )
    inner = function_code(function_code(module, "outer"), "inner")
    # the outer function's table counts the inner's lines too (as before)
    assert tracer.folded_lines(function_code(module, "outer")) == [(5, 4)]
    assert tracer.folded_lines(inner) == [(5, 4)]
    method = function_code(function_code(module, "K"), "m")
    assert tracer.folded_lines(method) == [(11, 10), (12, 10)]  # the outermost wins
    assert tracer.folded_lines(function_code(module, "one")) == []
    assert tracer.folded_lines(function_code(module, "decorated")) == [(16, 15)]


def test_each_function_is_parsed_from_its_own_lines(tmp_path, monkeypatch):
    # not the whole module per function (quadratic), nor the whole module at all (its
    # tree costs as much memory as compiling it)
    source = "".join(f"def f{i}(y):\n    return [x\n        for x in y]\n" for i in range(50))
    source += "class K:\n    def m(self):\n        return {\n            a for a in self}\n"
    module = compiled(source, tmp_path)
    parsed = []
    real_parse = tracer.ast.parse

    def parse(text, *args, **kwargs):
        parsed.append(text.count("\n"))
        return real_parse(text, *args, **kwargs)

    monkeypatch.setattr(tracer.ast, "parse", parse)
    for i in range(50):
        first = 1 + 3 * i
        assert tracer.folded_lines(function_code(module, f"f{i}")) == [(first + 2, first + 1)]
    method = function_code(function_code(module, "K"), "m")
    assert tracer.folded_lines(method) == [(154, 153)]
    assert tracer.folded_lines(function_code(module, "K")) == []  # a class body
    assert len(parsed) == 52 and max(parsed) == 4  # (the class: its own 4 lines)


def test_no_source_folds_nothing():
    code = compile("def f(y):\n    return [x\n for x in y]\n", "<nowhere>", "exec")
    assert tracer.folded_lines(function_code(code, "f")) == []


def test_dotted_targets_resolve_through_imported_modules(tmp_path, monkeypatch):
    module = types.ModuleType("fake_pkg.mod")
    exec(
        textwrap.dedent(
            """
            class Box:
                def fill(self): return 1
                @staticmethod
                def make(): return 2
                @property
                def size(self): return 3
            def func(): return 4
            """
        ),
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, "fake_pkg.mod", module)
    assert _targets._resolve("fake_pkg.mod.func") is module.func
    assert _targets._resolve("fake_pkg.mod.Box.fill") is module.Box.__dict__["fill"]
    assert isinstance(_targets._resolve("fake_pkg.mod.Box.make"), staticmethod)
    assert _targets._resolve("fake_pkg.mod.Box.size") is module.Box.size.fget
    assert _targets._resolve("fake_pkg.mod.nope") is None
    assert _targets._resolve("other.func") is None

    found: list[types.CodeType] = []
    targets = _targets.ModuleTargets(
        ["fake_pkg.mod.func", "fake_pkg.mod.Box.make", "os.getcwd", "fake_pkg.mod.later"],
        found.append,
    )
    assert targets.modules() == {"fake_pkg", "fake_pkg.mod", "fake_pkg.mod.Box", "os"}
    targets.check()
    assert found == [module.func.__code__, module.Box.__dict__["make"].__func__.__code__]
    assert targets.problems() == [
        "-f os.getcwd: not a Python function (builtin_function_or_method)",
        "-f fake_pkg.mod.later: no such function was imported",
    ]


def test_the_script_path_is_made_absolute_as_python_does(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _script.script_filename("./s.py") == os.path.join(str(tmp_path), "./s.py")
    assert _script.script_filename("a/../s.py") == os.path.join(str(tmp_path), "a/../s.py")
    assert _script.script_filename("/x//y.py") == "/x//y.py"


def test_main_module_namespace_has_pythons_keys_in_order():
    module = _script.new_main_module()
    assert list(vars(module)) == [
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
        "__annotations__",
        "__builtins__",
    ]
    assert module.__builtins__ is __builtins__ or module.__builtins__.__name__ == "builtins"


def test_memit_result_is_memory_profilers_in_mib():
    result = MemitResult([3 * MIB, 5 * MIB], 100 * MIB, repeat=2, timeout=1.5, interval=0.2)
    assert result.baseline == 100.0
    assert result.mem_usage == [103.0, 105.0]
    assert result.increment_bytes == 5 * MIB
    assert (result.repeat, result.timeout, result.interval, result.include_children) == (
        2,
        1.5,
        0.2,
        False,
    )
    assert str(result) == "peak memory: 105.00 MiB, increment: 5.00 MiB"
