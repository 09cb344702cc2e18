"""Pympler users' code runs unchanged under memtrim (issue 15).

Scripts shaped like Pympler's own tests, run in a subprocess with
``memtrim`` in place of ``pympler.asizeof``.
"""

from __future__ import annotations

SCRIPT = """
import sys
import memtrim as asizeof

class Old:
    def method(self):
        return 1

def function(a, b=2):
    return a + b

objects = {
    "function": function,
    "lambda": lambda: 0,
    "bound method": Old().method,
    "unbound method": Old.method,
    "class": Old,
    "type": type,
    "code": function.__code__,
    "builtin": len,
    "module": sys,
    "frame": sys._getframe(),
    "staticmethod": staticmethod(function),
    "object": object(),
}
for name, obj in objects.items():
    flat = asizeof.flatsize(obj)
    aligned = asizeof.flatsize(obj, align=16)
    expected = sys.getsizeof(obj)
    print(name, flat == expected > 0, aligned == (expected + 15) & ~15)

for call in (asizeof.asized, asizeof.asizesof):
    try:
        call(all=True)
    except KeyError as exc:
        print(call.__name__, "KeyError", "all" in str(exc))
try:
    asizeof.asizeof([1], bogus=1)
except KeyError as exc:
    print("asizeof KeyError", "bogus" in str(exc))
print("all", asizeof.asizeof(all=True) > 0)
"""


def test_flatsize_and_option_errors_as_pympler(runner):
    script = runner.write(SCRIPT)
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    names = [
        "function", "lambda", "bound method", "unbound method", "class", "type",
        "code", "builtin", "module", "frame", "staticmethod", "object",
    ]  # fmt: skip
    assert lines[: len(names)] == [f"{name} True True" for name in names]
    assert lines[len(names) :] == [
        "asized KeyError True",
        "asizesof KeyError True",
        "asizeof KeyError True",
        "all True",
    ]
