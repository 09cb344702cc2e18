"""``memtrim.advise()`` and ``memtrim run --advise`` from the outside: options,
hostile objects, a program left as it was, the ways a program ends, and
figures that the advisor does not change."""

from __future__ import annotations

import collections
import gc
import json
import signal
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

import memtrim
from memtrim.advice.render.text import AdviceList
from memtrim.objects._layout import materialized_dict
from memtrim.run import capture as capture_file
from tests.conftest import subprocess_env

# ------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("threshold", "error"),
    [
        ("1M", TypeError),
        (1.5, TypeError),
        (None, TypeError),
        (True, TypeError),
        (False, TypeError),
        (-1, ValueError),
    ],
)
def test_bad_thresholds_are_refused(threshold, error):
    with pytest.raises(error, match="threshold"):
        memtrim.advise([1.0] * 100, threshold=threshold)


def test_good_thresholds():
    assert memtrim.advise([1.0] * 100, threshold=0) == []  # one shared float: nothing to save
    assert isinstance(memtrim.advise(threshold=2**62), AdviceList)


def test_the_threshold_is_keyword_only():
    data = [float(i) + 0.5 for i in range(20_000)]  # saves about 0.5 MiB
    assert memtrim.advise(data, threshold=10)
    # a positional int is one more object to look at, never the threshold
    assert memtrim.advise(data, 10) == []  # the default threshold: 1 MiB


# ------------------------------------------------------------------ hostile objects


class Boom(Exception):
    pass


def boom(*args: Any, **kwargs: Any) -> Any:
    raise Boom("a user method was called")


class Hostile:
    __repr__ = boom
    __str__ = boom
    __eq__ = boom
    __hash__ = boom  # type: ignore[assignment]
    __len__ = boom
    __iter__ = boom
    __getattr__ = boom
    __sizeof__ = boom

    def __init__(self, i: int) -> None:
        object.__setattr__(self, "a", i)
        object.__setattr__(self, "b", float(i))


class HostileAttributes:
    def __init__(self) -> None:
        object.__setattr__(self, "x", 1)

    def __getattribute__(self, name: str) -> Any:
        raise Boom(name)


class Proxy:
    """Pretends to be what it wraps, down to its class."""

    def __init__(self, target: Any) -> None:
        object.__setattr__(self, "_target", target)

    def __getattribute__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return list


class BadList(list):
    __iter__ = boom
    __len__ = boom
    __getitem__ = boom
    __repr__ = boom


class HostileMeta(type):
    def __getattribute__(cls, name: str) -> Any:
        raise Boom(name)

    __repr__ = boom


class FromHostileMeta(metaclass=HostileMeta):
    def __init__(self, i: int) -> None:
        self.a = i
        self.b = i


class Dead:
    pass


def hostile_objects() -> list[Any]:
    dead = Dead()
    proxy = weakref.proxy(dead)
    del dead
    gc.collect()
    return [
        Hostile(1),
        [Hostile(i) for i in range(2000)],
        HostileAttributes(),
        [HostileAttributes() for _ in range(2000)],
        proxy,
        [proxy] * 100,
        Proxy([1.5] * 1000),
        Proxy({"a": 1}),
        BadList(float(i) for i in range(1000)),
        {"k": BadList([1, 2, 3]), "h": Hostile(3)},
        [FromHostileMeta(i) for i in range(2000)],
        FromHostileMeta,
        Hostile,
    ]


@pytest.mark.parametrize("index", range(13))
def test_a_hostile_object_never_makes_advise_raise(index):
    objs = hostile_objects()
    assert len(objs) == 13
    found = memtrim.advise(objs[index], threshold=0)
    assert isinstance(found, AdviceList) and isinstance(found, list)
    str(found)  # and it prints


def test_hostile_objects_together_and_the_whole_heap():
    objs = hostile_objects()
    for found in (memtrim.advise(*objs, threshold=0), memtrim.advise(objs, threshold=0)):
        assert isinstance(found, AdviceList)
        str(found)
    found = memtrim.advise(threshold=0)  # every live object, the hostile ones among them
    assert isinstance(found, AdviceList)
    del objs


# ------------------------------------------------------------------ the program stays as it was

CALLS: collections.Counter[str] = collections.Counter()


class Counted:
    def __init__(self, i: int) -> None:
        self.a = i
        self.b = float(i)
        self.c = "".join(["c", str(i)])

    def __eq__(self, other: object) -> bool:
        CALLS["__eq__"] += 1
        return NotImplemented

    def __hash__(self) -> int:
        CALLS["__hash__"] += 1
        return 1

    def __len__(self) -> int:
        CALLS["__len__"] += 1
        return 0

    def __iter__(self) -> Any:
        CALLS["__iter__"] += 1
        return iter(())

    def __repr__(self) -> str:
        CALLS["__repr__"] += 1
        return "Counted()"

    def __getattr__(self, name: str) -> Any:
        CALLS["__getattr__"] += 1
        raise AttributeError(name)


@pytest.fixture
def counted() -> list[Counted]:
    objs = [Counted(i) for i in range(5000)]
    CALLS.clear()
    return objs


def test_no_instance_dict_is_built(counted):
    assert all(materialized_dict(obj) is None for obj in counted)
    found = memtrim.advise(counted, threshold=0)
    assert [a.kind for a in found if a.kind == "slots"] == ["slots"]  # they were looked at
    str(found)
    assert all(materialized_dict(obj) is None for obj in counted)
    memtrim.advise(threshold=0)
    assert all(materialized_dict(obj) is None for obj in counted)


def test_no_user_method_is_called_while_looking(counted):
    memtrim.advise(counted[0], threshold=0)
    memtrim.advise(*counted[:3], threshold=0)
    assert CALLS == {}


def test_no_user_method_is_called_while_naming_the_holders(counted):
    found = memtrim.advise(counted, threshold=0)
    assert found
    assert CALLS == {}, dict(CALLS)


# ------------------------------------------------------------------ memtrim run --advise

WASTE = """\
import os
import random
import signal
import sys

DATA = [random.random() for _ in range(2_000_000)]  # PLANTED
print("built", len(DATA))
sys.stdout.flush()
{ending}
"""

ENDINGS = {
    "exit": ("raise SystemExit(3)", 3),
    "error": ("raise RuntimeError('boom')", 1),
    "sigterm": ("os.kill(os.getpid(), signal.SIGTERM)\nprint('not reached')", -signal.SIGTERM),
}


def planted_line(source: str) -> int:
    return next(n for n, text in enumerate(source.splitlines(), 1) if "# PLANTED" in text)


def run_advised(runner, source: str, *options: str, name: str = "script.py") -> tuple[Any, dict]:
    script = runner.write(source, name)
    out = runner.tmp_path / f"{script.stem}.json"
    capture = runner.tmp_path / f"{script.stem}.memtrim"
    proc = runner.memtrim(
        "run", "--force", "-o", str(capture), "--json", str(out), *options, str(script)
    )
    data = json.loads(out.read_text()) if out.exists() else {}
    return proc, data


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_the_advice_survives_the_way_the_program_ends(runner, ending):
    code, expected = ENDINGS[ending]
    source = WASTE.format(ending=code)
    plain = runner.python(str(runner.write(source, "plain.py")))
    assert plain.returncode == expected  # what the program does without memtrim
    proc, data = run_advised(runner, source, "--advise")
    assert proc.returncode == plain.returncode, proc.stderr
    assert "built 2000000" in proc.stdout
    assert "not reached" not in proc.stdout
    # the summary on stderr carries the advice table
    assert "Advice" in proc.stderr, proc.stderr
    assert "array" in proc.stderr
    if ending == "error":
        assert "RuntimeError: boom" in proc.stderr
    # and so does the JSON report
    assert "advice" in data, sorted(data)
    arrays = [a for a in data["advice"] if a["kind"] == "array"]
    assert len(arrays) == 1, data["advice"]
    entry = arrays[0]
    assert entry["lineno"] == planted_line(source)
    assert Path(entry["filename"]).name == "script.py"
    # 2,000,000 floats of 24 bytes and a list of them -> 8 bytes each
    assert entry["saving"] >= 2_000_000 * (24 + 8) - 2_000_000 * 8 - 1024
    assert entry["saving"] == entry["bytes"] - entry["after"]


def test_the_threshold_option_needs_advise(runner):
    script = runner.write('print("ran")\n')
    proc = runner.memtrim("run", "--advise-threshold", "1M", str(script))
    assert proc.returncode == 2
    assert "ran" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "--advise-threshold" in lines[0] and "--advise" in lines[0]
    assert not list(runner.tmp_path.glob("*.memtrim"))


@pytest.mark.parametrize("value", ["abc", "-5", "1Q"])
def test_a_bad_threshold_option(runner, value):
    script = runner.write('print("ran")\n')
    proc = runner.memtrim("run", "--advise", f"--advise-threshold={value}", str(script))
    assert proc.returncode == 2
    assert "ran" not in proc.stdout
    assert "--advise-threshold" in proc.stderr
    assert not list(runner.tmp_path.glob("*.memtrim"))


def test_the_threshold_option_is_applied(runner):
    source = WASTE.format(ending="")
    _, low = run_advised(runner, source, "--advise", "--advise-threshold", "1M", name="low.py")
    assert [a["kind"] for a in low["advice"]] == ["array"]
    _, high = run_advised(runner, source, "--advise", "--advise-threshold", "1G", name="high.py")
    assert high["advice"] == []


def test_advise_inside_a_run_names_the_allocating_line(runner):
    source = """\
    import memtrim

    def make():
        return [float(i) + 0.5 for i in range(200_000)]  # PLANTED

    DATA = make()
    found = memtrim.advise(DATA)
    print([(a.kind, a.lineno, a.filename.rsplit("/", 1)[-1]) for a in found])
    """
    script = runner.write(source)
    line = planted_line(script.read_text())
    proc = runner.memtrim("run", "-q", "-o", str(runner.tmp_path / "x.memtrim"), str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([("array", line, "script.py")])
    plain = runner.python(str(script))
    assert plain.stdout.strip() == str([("array", 0, "")])  # outside a run: no line known


# ------------------------------------------------------------------ the figures stay the same

BUILD_AND_FREE = """\
import sys

def build():
    data = [float(i) for i in range(50 * 2**20 // 32)]  # about 50 MB: list and floats
    total = sum(data)
    del data
    return total

KEEP = [str(i) * 3 for i in range(100_000)]
print("total", build(), len(KEEP))
for i in range(5):
    print(i, i * i)
"""


def test_the_advice_does_not_change_the_figures_or_the_output(runner):
    script = runner.write(BUILD_AND_FREE)
    reports = {}
    outputs = {}
    for name, options in (("plain", ()), ("advised", ("--advise",))):
        out = runner.tmp_path / f"{name}.json"
        capture = runner.tmp_path / f"{name}.memtrim"
        command = [sys.executable, "-m", "memtrim", "run", "-q", "-o", str(capture)]
        proc = subprocess.run(
            [*command, "--json", str(out), *options, str(script)],
            capture_output=True,  # bytes: the output must be the same to the byte
            cwd=runner.tmp_path,
            env=subprocess_env(),
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        reports[name] = json.loads(out.read_text())
        outputs[name] = proc.stdout
        if options:  # the advisor did look, near the peak and at the end
            walks = capture_file.read(str(capture)).meta["advice_run"]["walks"]
            assert walks >= 2
    plain, advised = reports["plain"], reports["advised"]
    assert plain["peak"]["bytes"] >= 50 * 10**6
    for figure in ("peak", "at_exit"):
        a, b = plain[figure]["bytes"], advised[figure]["bytes"]
        assert abs(a - b) <= 0.01 * a, (figure, a, b)
    assert outputs["plain"] == outputs["advised"]
    assert outputs["plain"].startswith(b"total ")
    assert "advice" in advised and "advice" not in plain


KEPT_TO_THE_END = """\
import random

DATA = [random.random() for _ in range(500_000)]
print("built", len(DATA))
"""


def test_the_advisors_own_allocations_are_not_charged_to_any_line(runner):
    script = runner.write(KEPT_TO_THE_END)
    files = {}
    for name, options in (("plain", ()), ("advised", ("--advise",))):
        out = runner.tmp_path / f"{name}.json"
        proc = runner.memtrim(
            "run",
            "-q",
            "-o",
            str(runner.tmp_path / f"{name}.memtrim"),
            "--json",
            str(out),
            *options,
            str(script),
        )
        assert proc.returncode == 0, proc.stderr
        data = json.loads(out.read_text())
        files[name] = {Path(site["filename"]).name for site in data["allocated"]["sites"]}
    assert files["advised"] <= files["plain"], files["advised"] - files["plain"]
