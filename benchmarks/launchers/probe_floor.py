"""Run a script with a no-op C call at each basic block of its functions: a probe design's floor.

Usage: python probe_floor.py [--hooks] script.py [args...]

The floor of a line profiler that compiled probes into the profiled code
instead of taking CPython's events (``docs/benchmarks.md``, issue 17): every
function of the script gets a call of a C function that does nothing useful
(``operator.not_``, found in the builtins) at its entry, at the start of every
block (the bodies of ``if``/``else``, loops, ``try``/``except``/``finally``,
``with``, ``match`` cases), after every compound statement (where the flow
joins again), before every ``return`` and at the end of the body. That is
about one probe per basic block and per exit; no trace function and no
``sys.monitoring`` events, so CPython keeps its specialized instructions on
3.11 too. It is done on the source (ast) rather than the bytecode, which misses
the branches inside expressions (``and``/``or``, conditional expressions,
comprehensions) and a generator's or coroutine's resumptions (a ``yield from``
suspends and resumes its frame once per value without starting a statement):
a lower bound, far below for generators. ``--hooks`` also installs memtrim's allocator
hooks (exact per-block sizes, no listener), which every figure needs.
"""

import ast
import builtins
import operator
import os
import sys
import types

PROBE = "__memtrim_probe__"
BLOCKS = ("body", "orelse", "finalbody")


def probe(node: ast.AST) -> ast.stmt:
    call = ast.Call(ast.Name(PROBE, ast.Load()), [ast.Constant(0)], [])
    return ast.copy_location(ast.Expr(call), node)


class Probes(ast.NodeTransformer):
    """Puts the probes into every function (nested ones and methods too)."""

    def __init__(self) -> None:
        self.depth = 0  # inside a function

    def visit_FunctionDef(self, node):  # type: ignore[no-untyped-def]
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
        body = self.block(node.body, entry=True)
        if not isinstance(node.body[-1], ast.Return | ast.Raise):
            body.append(probe(node.body[-1]))
        node.body = body
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def generic_visit(self, node):  # type: ignore[no-untyped-def]
        super().generic_visit(node)
        if self.depth and not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for name in BLOCKS:
                stmts = getattr(node, name, None)
                if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                    setattr(node, name, self.block(stmts))  # except and case bodies too
        return node

    @staticmethod
    def block(stmts: list[ast.stmt], entry: bool = False) -> list[ast.stmt]:
        """A probe at the block's entry, after each compound statement, before each
        return (one for a block that starts with its return, but a function's call
        and return are two)."""
        out = [probe(stmts[0])] if entry or not isinstance(stmts[0], ast.Return) else []
        for stmt in stmts:
            if isinstance(stmt, ast.Return):
                out.append(probe(stmt))
            out.append(stmt)
            compound = isinstance(
                stmt, ast.If | ast.For | ast.AsyncFor | ast.While | ast.Try | ast.With | ast.Match
            )
            if compound and stmt is not stmts[-1]:
                out.append(probe(stmt))
        return out


def main() -> None:
    args = sys.argv[1:]
    hooks = "--hooks" in args
    args = [a for a in args if a != "--hooks"]
    script = os.path.abspath(args[0])
    with open(script, "rb") as f:
        tree = ast.parse(f.read(), script)
    code = compile(ast.fix_missing_locations(Probes().visit(tree)), script, "exec")
    setattr(builtins, PROBE, operator.not_)
    if hooks:
        from memtrim.engine import hooks as _hooks

        globals()["_held"] = _hooks.acquire("probe floor", None)
    sys.argv = args
    sys.path[0] = os.path.dirname(script)
    main_module = types.ModuleType("__main__")
    main_module.__file__ = script
    main_module.__builtins__ = builtins  # type: ignore[attr-defined]
    sys.modules["__main__"] = main_module
    exec(code, main_module.__dict__)


if __name__ == "__main__":
    main()
