"""memory_profiler and Pympler compatibility, on plain data (issue 15)."""

from __future__ import annotations

import sys

import pytest

from memtrim.commands.record import CallPhases
from memtrim.ipython import check_text_file
from memtrim.lines.model import build_table
from memtrim.lines.session import CodeMap
from memtrim.objects import sizing
from memtrim.objects.api import asized, asizeof, asizesof, flatsize

MIB = 2**20


def _outer():  # its code and the code nested in it
    def inner():
        return 1

    return inner


def test_code_map_holds_memory_profilers_tuples_in_mib():
    code = _outer.__code__
    first = code.co_firstlineno
    table = build_table(
        "_outer",
        "f.py",
        [(first + 1, 3, 3 * MIB, 3 * MIB, 5 * MIB), (first + 4, 1, -MIB // 2, 0, MIB)],
        ["def _outer():\n", "    def inner():\n", "        return 1\n", "\n", "    return inner\n"],
        first,
    )
    code_map = CodeMap()
    code_map.add_table(code, table)
    inner = next(c for c in code.co_consts if hasattr(c, "co_code"))
    assert code_map[code] == {first + 1: (3.0, 5.0, 3), first + 4: (-0.5, 1.0, 1)}
    assert code_map[inner] is code_map[code]  # nested code shares its function's lines
    ((filename, lines),) = list(code_map.items())  # memory_profiler's items()
    rows = list(lines)
    assert filename == "f.py"
    assert [n for n, _ in rows] == list(range(first, first + 5))
    assert dict(rows)[first + 1] == (3.0, 5.0, 3) and dict(rows)[first] is None


def test_code_map_items_skip_functions_that_never_ran():
    code_map = CodeMap()
    code_map.add_table(_outer.__code__, build_table("_outer", "f.py", [], ["x\n"], 1))
    assert list(code_map.items()) == [] and code_map[_outer.__code__] == {}


class _K:
    def method(self) -> None:
        pass


@pytest.mark.parametrize(
    "obj", [_outer, _K().method, _K, _outer.__code__, len, sys, type, object()]
)
def test_flatsize_of_any_object_is_its_getsizeof(obj):
    assert flatsize(obj) == sys.getsizeof(obj) > 0
    assert flatsize(obj, align=16) == (sys.getsizeof(obj) + 15) & ~15


@pytest.mark.parametrize("call", [asized, asizesof, asizeof])
def test_an_unknown_option_is_a_key_error_as_in_pympler(call):
    with pytest.raises(KeyError) as info:
        call([1], bogus=1)
    assert isinstance(info.value, TypeError)  # as an unexpected keyword argument
    assert str(info.value) == "unknown option(s): bogus"
    with pytest.raises(KeyError, match="unknown option"):
        asized(all=True)  # asizeof's option only
    assert issubclass(sizing.OptionError, KeyError)


def test_mprun_text_file_problems(tmp_path):
    assert check_text_file(str(tmp_path / "out.txt")) is None
    assert check_text_file(str(tmp_path / "no" / "out.txt")) == (
        f"no such directory: {tmp_path / 'no'}"
    )
    assert check_text_file(str(tmp_path)) == f"{tmp_path} is a directory"


def test_record_profile_builtin_keeps_the_function_shape():
    marks = CallPhases()

    def plain(a, b=2):
        """doc"""
        return a + b

    def gen():
        yield 1

    wrapped = marks(plain)
    assert wrapped is not plain and wrapped.__name__ == "plain" and wrapped.__doc__ == "doc"
    assert wrapped(1) == 3  # no recording open: the call runs, measured on its own
    assert marks(precision=3)(plain)(2, b=5) == 7
    assert marks(gen) is gen  # a call only creates the generator: nothing to mark
    with marks as same:
        marks.enable_by_count()
        marks.disable_by_count()
    assert same is marks
