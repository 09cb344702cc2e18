"""Advice records and their text: plain data, merged, ranked and printed."""

from __future__ import annotations

import json

import pytest
from rich.cells import cell_len

from memtrim.advice.render.text import AdviceList, advice_text
from memtrim.model.advice import (
    CONFIDENCE,
    DEFAULT_THRESHOLD,
    KINDS,
    MEASURED,
    Advice,
    merge,
    ranked,
)

MIB = 2**20


def make(**fields) -> Advice:
    base = {
        "kind": "array",
        "filename": "/app/prog.py",
        "lineno": 12,
        "source": "xs = [float(i) for i in range(n)]",
        "type": "list of float",
        "count": 1,
        "bytes": 10 * MIB,
        "after": 2 * MIB,
        "fix": "build array.array('d', ...) instead of the list",
    }
    base.update(fields)
    return Advice(**base)


# ------------------------------------------------------------------ the record


def test_the_vocabularies():
    assert DEFAULT_THRESHOLD == 1024 * 1024
    assert set(KINDS) >= {"array", "slots", "intern", "records", "generator", "mmap", "dtype"}
    assert set(KINDS) >= {"trie", "bloom", "hll", "leak", "cache"}
    assert MEASURED == ("all", "sample", "computed")
    assert CONFIDENCE == ("exact", "review", "changes results")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "arrays"),
        ("kind", ""),
        ("kind", "ARRAY"),
        ("measured", "some"),
        ("measured", ""),
        ("confidence", "sure"),
        ("confidence", "Exact"),
    ],
)
def test_unknown_vocabulary_is_refused(field, value):
    with pytest.raises(ValueError, match=repr(value)):
        make(**{field: value})


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_accepted(kind):
    assert make(kind=kind).kind == kind


def test_defaults():
    item = make()
    assert item.caveats == [] and item.holder == []
    assert item.measured == "all"
    assert item.confidence == "review"
    assert item.qualname == "" and item.when == "exit" and item.error == 0.0
    # the lists are not shared between records
    item.caveats.append("x")
    assert make().caveats == []


def test_after_is_clipped_to_bytes_and_saving_is_their_difference():
    item = make(bytes=1000, after=250)
    assert (item.bytes, item.after, item.saving) == (1000, 250, 750)
    bigger = make(bytes=1000, after=5000)  # an alternative that costs more saves nothing
    assert (bigger.bytes, bigger.after, bigger.saving) == (1000, 1000, 0)
    same = make(bytes=1000, after=1000)
    assert same.saving == 0
    zero = make(bytes=1000, after=0)
    assert zero.saving == 1000


def test_bytes_and_after_become_ints():
    item = make(bytes=1000.0, after=250.0)
    assert type(item.bytes) is int and type(item.after) is int
    assert item.saving == 750 and type(item.saving) is int


def test_where_is_the_line_or_the_first_holder():
    assert make().where() == "/app/prog.py:12"
    held = make(filename="", lineno=0, holder=["__main__.CACHE", "list[3]"])
    assert held.where() == "__main__.CACHE"
    assert make(filename="", lineno=0).where() == "(line not known)"


def test_the_key_is_kind_file_line_and_type():
    assert make().key == ("array", "/app/prog.py", 12, "list of float")
    assert make(bytes=1, after=0, fix="other").key == make().key
    assert make(type="tuple of float").key != make().key


def test_to_dict_has_every_field_and_the_saving():
    item = make(
        caveats=["one", "two"],
        holder=["__main__.X"],
        measured="sample",
        error=0.05,
        confidence="exact",
        qualname="main",
        when="peak",
    )
    data = item.to_dict()
    assert data["saving"] == 8 * MIB
    assert data["bytes"] == 10 * MIB and data["after"] == 2 * MIB
    assert data["caveats"] == ["one", "two"] and data["holder"] == ["__main__.X"]
    assert set(data) == set(Advice.__dataclass_fields__) | {"saving"}
    # it is JSON: the round trip through text gives the same record back
    again = Advice.from_dict(json.loads(json.dumps(data)))
    assert again == item
    assert again.to_dict() == data


def test_from_dict_recomputes_the_saving_and_ignores_unknown_fields():
    data = make().to_dict()
    data["saving"] = 123  # a stale or edited figure: recomputed, never trusted
    data["from_a_newer_version"] = True
    item = Advice.from_dict(data)
    assert item.saving == 8 * MIB
    assert item.to_dict()["saving"] == 8 * MIB
    assert "from_a_newer_version" not in item.to_dict()


def test_from_dict_validates_too():
    data = make().to_dict()
    data["kind"] = "nonsense"
    with pytest.raises(ValueError):
        Advice.from_dict(data)


# ------------------------------------------------------------------ merge and rank


def test_merge_keeps_the_larger_saving_per_key():
    peak = make(bytes=10 * MIB, after=2 * MIB, when="peak")  # saves 8 MiB
    exit_ = make(bytes=6 * MIB, after=1 * MIB, when="exit")  # same key, saves 5 MiB
    other = make(kind="slots", type="P", bytes=3 * MIB, after=MIB)
    merged = merge([[exit_, other], [peak]])
    assert len(merged) == 2
    by_kind = {a.kind: a for a in merged}
    assert by_kind["array"] is peak
    assert by_kind["slots"] is other
    # the order of the walks does not matter
    assert {id(a) for a in merge([[peak], [exit_, other]])} == {id(peak), id(other)}


def test_merge_of_equal_savings_keeps_the_first():
    first = make(when="peak")
    second = make(when="exit")
    assert merge([[first], [second]]) == [first]
    assert merge([[first], [second]])[0] is first


def test_merge_of_nothing():
    assert merge([]) == []
    assert merge([[], []]) == []


def test_ranked_sorts_by_saving_and_drops_what_is_under_the_threshold():
    small = make(lineno=1, bytes=MIB, after=MIB // 2)  # saves 0.5 MiB
    exact = make(lineno=2, bytes=2 * MIB, after=MIB)  # saves exactly 1 MiB
    big = make(lineno=3, bytes=50 * MIB, after=0)
    middle = make(lineno=4, bytes=9 * MIB, after=MIB)
    nothing = make(lineno=5, bytes=MIB, after=MIB)
    out = ranked([small, exact, big, middle, nothing])
    assert out == [big, middle, exact]  # at the threshold is kept
    assert [a.saving for a in out] == [50 * MIB, 8 * MIB, MIB]
    assert ranked([small, big], threshold=10 * MIB) == [big]
    # threshold 0 keeps every saving, never one that saves nothing
    assert ranked([nothing, small], threshold=0) == [small]


def test_ranked_ties_are_ordered_by_kind_file_and_line():
    a = make(kind="slots", lineno=9)
    b = make(kind="array", lineno=9)
    c = make(kind="array", lineno=3)
    assert ranked([a, b, c]) == [c, b, a]


# ------------------------------------------------------------------ the text


def full_advice() -> list[Advice]:
    return [
        make(
            caveats=["an array holds only floats; appending anything else raises TypeError"],
            holder=["__main__.DATA"],
        ),
        make(
            kind="slots",
            filename="/a/very/long/directory/name/that/goes/on/and/on/for/ever/module.py",
            lineno=1234,
            source="self.a, self.b, self.c = a, b, c  # a long line of source text, longer than 80",
            type="package.module.SomeClassWithALongName",
            count=123_456,
            bytes=12 * MIB,
            after=5 * MIB,
            fix="class SomeClassWithALongName: __slots__ = ('alpha', 'beta', 'gamma', 'delta') "
            "(or @dataclass(slots=True))",
            caveats=["instances can no longer get attributes outside __slots__ " * 3],
            measured="sample",
            error=0.031,
            holder=["__main__.REGISTRY", "dict['key']", "list[0]", "<SomeClass object>"],
        ),
        make(
            kind="bloom",
            bytes=4 * MIB,
            after=24_000,
            measured="computed",
            confidence="changes results",
        ),
    ]


def test_every_line_fits_the_width():
    text = advice_text(full_advice(), width=80)
    lines = text.splitlines()
    assert len(lines) > 10
    for line in lines:
        assert cell_len(line) <= 80, line
        assert len(line) <= 80, line


def test_the_table_has_kind_where_and_saving():
    items = full_advice()
    text = advice_text(items, width=120)
    head = text.splitlines()[0]
    assert head.startswith("Advice")
    for column in ("kind", "where", "saving", "fix", "now -> after"):
        assert column in text
    assert "prog.py:12" in text
    assert "8.0 MiB" in text  # the first one's saving
    assert "10.0 MiB -> 2.0 MiB" in text
    # largest first is the caller's order: the rows come in the order given
    assert text.index("[1] array") < text.index("[2] slots") < text.index("[3] bloom")
    assert "measured on a sample (within 3.1%)" in text
    assert "computed; changes results" in text
    assert "held by: __main__.REGISTRY -> dict['key'] -> list[0] -> <SomeClass object>" in text


def test_paths_are_shown_relative_to_the_working_directory():
    text = advice_text([make()], width=120, cwd="/app")
    assert "prog.py:12" in text and "/app/prog.py" not in text
    outside = advice_text([make(filename="/elsewhere/prog.py")], width=120, cwd="/app")
    assert "/elsewhere/prog.py:12" in outside
    unknown = advice_text([make(filename="", lineno=0, holder=["__main__.X"])], width=120)
    assert "__main__.X" in unknown


def test_nothing_to_change():
    assert advice_text([], width=80) == "Advice: nothing to change above the threshold."
    assert str(AdviceList()) == "Advice: nothing to change above the threshold."


def test_an_advice_list_is_a_list_that_prints_as_a_table():
    items = full_advice()
    found = AdviceList(items)
    assert isinstance(found, list) and found == items
    assert str(found) == advice_text(items)
    assert found.to_dicts() == [a.to_dict() for a in items]
    json.dumps(found.to_dicts())
    assert found.__rich__() is not None


# Text from the profiled program: its source line, its file name, the fix built
# from its source, the names of its classes. It must come out as written.

MARKUP = "[red]hot[/red] [bold]x[/] [link=http://evil]y[/link]"


def test_the_programs_text_is_not_markup_in_the_details():
    item = make(
        source=f"xs = f('{MARKUP}')",
        fix=f"use g('{MARKUP}')",
        caveats=[f"careful with {MARKUP}"],
        holder=[f"__main__.D['{MARKUP}']"],
        type=f"list of {MARKUP}",
    )
    text = advice_text([item], width=300)
    details = text[text.index("[1] array") :]
    assert f"xs = f('{MARKUP}')" in details
    assert f"fix: use g('{MARKUP}')" in details
    assert f"careful with {MARKUP}" in details
    assert f"__main__.D['{MARKUP}']" in details
    assert f"list of {MARKUP}" in details


def test_the_programs_text_is_not_markup_in_the_table():
    item = make(filename="/app/[red]odd[/red].py", fix="use g('[bold]x[/bold]')")
    text = advice_text([item], width=300)
    table = text[: text.index("[1] array")]
    assert "/app/[red]odd[/red].py:12" in table
    assert "use g('[bold]x[/bold]')" in table


def test_a_closing_tag_in_the_programs_text_does_not_break_the_table():
    # generator advice copies the program's source into the fix
    item = make(kind="generator", fix="pass a generator: sum(len(x) for x in d['[/b]'])")
    text = advice_text([item], width=200)
    assert "d['[/b]']" in text


def test_escape_sequences_of_the_program_are_kept_as_text():
    # an ANSI escape in a source line is data: rich neither styles by it nor drops its text
    escape = "\x1b[31mred\x1b[0m"
    item = make(source=f"s = '{escape}'")
    text = advice_text([item], width=200)
    shown = (f"s = '{escape}'", "s = '\\x1b[31mred\\x1b[0m'")  # as is, or visibly escaped
    assert any(form in text for form in shown), repr(text)
