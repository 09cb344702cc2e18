"""The one byte formatter per format, parse_size and the JSON-in-HTML escaper."""

from __future__ import annotations

import json

import pytest

from memtrim.model.units import MIB, human, mib, mib_column, parse_size, script_json, to_mib


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (-2048, "-2.0 KiB"),
        (3 * MIB, "3.0 MiB"),
        (80_000_056, "76.3 MiB"),
        (5 * 2**30, "5.0 GiB"),
        (3 * 2**40, "3072.0 GiB"),
        (100.4, "100 B"),
    ],
)
def test_human(value, text):
    assert human(value) == text


def test_mib_has_fixed_decimals():
    assert mib(45 * MIB) == "45.0 MiB"
    assert mib(80_000_056) == "76.3 MiB"
    assert mib(80_000_056, 3) == "76.294 MiB"
    assert mib(0, 3) == "0.000 MiB"
    assert to_mib(3 * MIB) == 3.0


def test_mib_column_is_memory_profilers():
    assert mib_column(80_000_056, 3) == " 76.294 MiB"
    assert mib_column(40 * MIB + 88_000_112, 3) == "123.923 MiB"
    assert mib_column(-100, 3) == "0.000 MiB".rjust(11)
    assert mib_column(-80_000_056, 3) == "-76.294 MiB"
    assert mib_column(1024 * 1024, 1) == "  1.0 MiB"


def test_the_line_table_uses_the_column_formatter():
    from memtrim.lines.render.text import format_mib

    assert format_mib is mib_column


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512M", 512 * MIB),
        ("2GiB", 2 * 2**30),
        ("1.5g", 3 * 2**29),
        ("1000000", 1_000_000),
        (" 64 k ", 64 * 1024),
        ("256KB", 256 * 1024),
        ("1t", 2**40),
        ("10b", 10),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid size ''"),
        ("lots", "use e.g. 512M"),
        ("0", "must be positive"),
        ("-1M", "invalid size"),
    ],
)
def test_parse_size_refuses_with_a_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_size(text)


def test_script_json_escapes_what_could_end_the_element():
    text = script_json({"a": "</script><!--&\u2028\u2029", "b": [1, 2.5, None]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"a": "</script><!--&\u2028\u2029", "b": [1, 2.5, None]}
    assert text.startswith('{"a":"\\u003c/script\\u003e')


def test_one_escaper_for_both_pages():
    from memtrim.run.render import html
    from memtrim.timeline.render import plot

    assert html.script_json is script_json
    assert plot.script_json is script_json
