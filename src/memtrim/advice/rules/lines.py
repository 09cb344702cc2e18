"""Lines whose own figures call for a change: ``generator`` (a list built to be
consumed once) and ``mmap`` (a whole file read into memory).

The input is per line: its high-water mark (the most its allocations held
at once) and what it still held at the end. A line that built a big list and
let it go has a high-water mark far above what it kept: that difference is
what a generator saves. The source text decides whether the list is consumed
once (``sum([...])``, ``for x in [...]``, ``.readlines()`` in a ``for``):
``"".join([...])`` is left alone (``join`` builds a list from a generator
anyway), and so is a list bound to a name (it may be used twice).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass

from memtrim.advice.rules.sites import Line
from memtrim.model.advice import Advice

#: functions that consume an iterable once, in order, and keep nothing of it
#: but their result (``sorted`` builds a list of its own: nothing to save)
CONSUMERS = frozenset(("sum", "max", "min", "any", "all", "set", "frozenset", "dict", "tuple"))
_READ = re.compile(r"\.(read|read_bytes|read_text|readlines)\(\s*\)")


@dataclass(frozen=True)
class LineFigures:
    """One line's figures: its high-water mark and what it held at the end."""

    line: Line
    high_water: int
    at_end: int


def _materialized(node: ast.AST, loop: bool = False) -> ast.AST | None:
    """The list built only to be iterated: ``[... for ...]``, ``list(...)``,
    ``x.readlines()``. In a ``for`` loop, ``list(d)`` of a name is left alone:
    it is a copy, so that the loop may change ``d``."""
    if isinstance(node, ast.ListComp):
        return node
    if isinstance(node, ast.Call) and not node.keywords and len(node.args) <= 1:
        func = node.func
        if (
            isinstance(func, ast.Name)
            and func.id == "list"
            and node.args
            and (not loop or isinstance(node.args[0], (ast.Call, ast.GeneratorExp)))
        ):
            return node
        if isinstance(func, ast.Attribute) and func.attr == "readlines" and not node.args:
            return node
    return None


def _once(tree: ast.AST) -> tuple[ast.AST, ast.AST] | None:
    """The materialized list consumed once in this statement, and its consumer
    (a call of :data:`CONSUMERS`, or a ``for``)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in CONSUMERS
            and len(node.args) == 1
        ):
            found = _materialized(node.args[0])
            if found is not None:
                return found, node
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            found = _materialized(node.iter, loop=True)
            if found is not None:
                return found, node
    return None


def _lazy_text(source: str, found: ast.AST) -> str:
    """What iterates the same items lazily, as source text: the comprehension
    as a generator (parenthesized), the call ``list()`` wrapped, the file itself."""
    if isinstance(found, ast.ListComp):
        segment = ast.get_source_segment(source, found) or "[]"
        return "(" + segment[1:-1].strip() + ")"
    if isinstance(found, ast.Call) and isinstance(found.func, ast.Attribute):
        return ast.get_source_segment(source, found.func.value) or "f"  # a file's lines
    inner = found.args[0] if isinstance(found, ast.Call) and found.args else found
    text = ast.get_source_segment(source, inner) or ""
    if isinstance(inner, ast.GeneratorExp) and not text.startswith("("):
        text = f"({text})"  # list(x for x in r): the call's parentheses were its own
    return text


def _fix_text(source: str, found: ast.AST, consumer: ast.AST) -> str:
    """The consumer's text with the list replaced by its lazy form."""
    lazy = _lazy_text(source, found)
    if isinstance(consumer, ast.Call):
        name = consumer.func.id  # type: ignore[attr-defined]
        if not consumer.keywords and lazy.startswith("(") and lazy.endswith(")"):
            return f"{name}{lazy}"  # sum(x for x in r): the call's parentheses suffice
        rest = [ast.get_source_segment(source, k) or "" for k in consumer.keywords]
        return f"{name}({', '.join([lazy, *rest])})"
    target = ast.get_source_segment(source, consumer.target) or "x"  # type: ignore[attr-defined]
    if isinstance(consumer, ast.comprehension):
        return f"... for {target} in {lazy}"  # the clause of a comprehension
    return f"for {target} in {lazy}:"


def _parse(source: str) -> tuple[ast.AST, str] | None:
    """The line parsed alone (a ``for`` header gets a body), and the text parsed."""
    text = source.strip()
    for candidate in (text, text.rstrip(":") + ": pass"):
        try:
            return ast.parse(candidate), candidate
        except SyntaxError:
            continue
    return None


def generator_advice(fig: LineFigures, threshold: int, when: str = "peak") -> Advice | None:
    """A line that built a big list consumed once -> a generator."""
    transient = fig.high_water - fig.at_end
    if transient < threshold:
        return None
    source = fig.line.source
    parsed = _parse(source)
    found = _once(parsed[0]) if parsed is not None else None
    if parsed is None or found is None:
        return None
    node, consumer = found
    loop = not isinstance(consumer, ast.Call)
    text = _fix_text(parsed[1], node, consumer)
    fix = f"iterate lazily: {text}" if loop else f"pass a generator: {text}"
    caveats = [
        "the items are made one at a time: the list cannot be indexed, measured "
        "with len() or iterated twice"
    ]
    if loop:
        caveats.append("the loop body must not change what is iterated")
    return Advice(
        kind="generator",
        filename=fig.line.filename,
        lineno=fig.line.lineno,
        source=source,
        qualname=fig.line.qualname,
        type="list",
        count=1,
        bytes=fig.high_water,
        after=fig.at_end,
        fix=fix,
        caveats=caveats,
        measured="all",
        confidence="review" if loop else "exact",
        when=when,
    )


def mmap_advice(fig: LineFigures, threshold: int, when: str = "") -> Advice | None:
    """A line that read a whole file into memory -> ``mmap`` or chunks."""
    held = max(fig.high_water, fig.at_end)
    if held < threshold or not _READ.search(fig.line.source):
        return None
    return Advice(
        kind="mmap",
        filename=fig.line.filename,
        lineno=fig.line.lineno,
        source=fig.line.source,
        qualname=fig.line.qualname,
        type="bytes",
        count=1,
        bytes=held,
        after=0,
        fix="with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) "
        "as data: ... (or read in chunks; numpy.memmap for arrays)",
        caveats=[
            "a mapping is bytes-like: text must be decoded in pieces",
            "the file's pages are the page cache's: the kernel drops and rereads them "
            "under pressure; the file must not shrink while mapped",
        ],
        measured="all",
        confidence="review",
        when=when or ("exit" if fig.at_end * 2 >= held else "peak"),
    )


def line_rules(
    figures: Iterable[LineFigures], threshold: int, when: str | None = None
) -> list[Advice]:
    """Both rules over every line's figures (``when``: the view the advice is
    about; by default a generator's is the peak, a file read's where it was
    held). A line a generator fixes gets no mmap advice too."""
    out = []
    for fig in figures:
        found = generator_advice(fig, threshold, when or "peak")
        if found is None:
            found = mmap_advice(fig, threshold, when or "")
        if found is not None:
            out.append(found)
    return out
