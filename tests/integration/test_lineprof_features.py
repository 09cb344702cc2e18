"""The line profiler on every kind of function users decorate or name."""

from __future__ import annotations

import json

from tests.integration.test_lineprof_numbers import BYTEARRAY
from tests.integration.test_lineprof_numbers import FIRST_RUN_NOISE as NOISE


def near(value: int, expected: int) -> bool:
    return 0 <= value - expected <= NOISE


def test_methods_static_and_class_methods(runner):
    tables = runner.profile_json(
        """
        class K:
            @profile
            def method(self):
                return bytearray(5000)

            @staticmethod
            @profile
            def static():
                return bytearray(6000)

            @profile
            @classmethod
            def klass(cls):
                return bytearray(7000)

        k = K()  # not a temporary: see test_an_argument_only_the_call_holds_dies_with_it
        keep = [k.method(), K.static(), K.klass(), k.klass()]
        """
    )
    assert tables["K.method"][5]["increment"] == 5000 + BYTEARRAY
    assert tables["K.method"][3]["increment"] == 5000 + BYTEARRAY
    assert tables["K.static"][10]["increment"] == 6000 + BYTEARRAY
    assert tables["K.klass"][15]["increment"] == 2 * (7000 + BYTEARRAY)
    assert tables["K.klass"][12]["occurrences"] == 2


WRAPS = """
import functools
def deco(f):
    @functools.wraps(f)
    def wrapper(*a, **k):
        scratch = bytearray(2**20)      # the decorator's own temporary
        return f(*a, **k)
    return wrapper

@profile
@deco
def outside():
    x = bytearray(3 * 2**20)
    return x

@deco
@profile
def inside():
    x = bytearray(3 * 2**20)
    return x

keep = outside(), inside()
"""


def test_functools_wraps_decorators_profile_the_inner_function(runner):
    tables = runner.profile_json(WRAPS)
    assert set(tables) == {"outside", "inside"}
    three = 3 * 2**20 + BYTEARRAY
    for name, first, body in (("outside", 10, 13), ("inside", 16, 19)):
        lines = tables[name]
        assert lines[body]["increment"] == three
        # the call as a whole is the inner function's, on either side of the
        # decorator: the wrapper's scratch buffer is in neither figure
        assert lines[first]["increment"] == three, name
        assert lines[first]["peak_increment"] == three, name
        assert set(lines) == {first, body, body + 1}


def test_a_function_named_with_f_has_the_same_table_as_decorated(runner):
    source = """
        # the decorator goes here
        def work(n):
            scratch = bytearray(3 * n)
            kept = bytearray(n)
            return kept
        keep = [work(10**6) for _ in range(2)]
        """
    by_name = runner.profile_json(source, "-f", "work")["work"]
    decorated = runner.profile_json(source.replace("# the decorator goes here", "@profile"))
    decorated = decorated["work"]
    by_name[2] = by_name.pop(3)  # the first row: the def line, or the decorator's
    kept, scratch = 10**6 + BYTEARRAY, 3 * 10**6 + BYTEARRAY
    # the first row waits for the locals to be released, as with @profile
    assert by_name[2]["increment"] == 2 * kept
    assert by_name[2]["peak_increment"] == kept + scratch
    assert decorated[2]["increment"] == 2 * kept
    assert decorated[2]["peak_increment"] == kept + scratch


def test_generators_count_each_resumption_but_not_close(runner):
    tables = runner.profile_json(
        """
        @profile
        def gen(n):
            for i in range(3):
                x = bytearray(n)
                yield x
        keep = list(zip(gen(1000), gen(2000)))
        """
    )
    lines = tables["gen"]
    # gen(1000): 3 yields and the final resumption; gen(2000): 3 yields, then
    # zip drops it and it is closed: a close is not a resumption, on any version
    assert lines[2]["occurrences"] == 7
    assert lines[5]["occurrences"] == 6
    assert lines[5]["increment"] == 3 * (1000 + BYTEARRAY) + 3 * (2000 + BYTEARRAY)
    assert lines[4]["occurrences"] == 7


def test_async_functions_and_async_generators(runner):
    tables = runner.profile_json(
        """
        import asyncio

        @profile
        async def coro():
            await asyncio.sleep(0)
            return bytearray(9000)

        @profile
        async def agen():
            for i in range(2):
                await asyncio.sleep(0)
                yield bytearray(100)

        async def main():
            a = await coro()
            b = [x async for x in agen()]
            return a, b
        keep = asyncio.run(main())
        """
    )
    assert tables["coro"][7]["increment"] == 9000 + BYTEARRAY
    assert tables["coro"][4]["occurrences"] == 2  # started, resumed after the sleep
    assert tables["agen"][13]["occurrences"] == 2
    # and the async generator's own wrapper of the value yielded (first time only)
    assert 0 <= tables["agen"][13]["increment"] - 2 * (100 + BYTEARRAY) <= 64


def test_recursion_gives_one_table_and_counts_bytes_once(runner):
    tables = runner.profile_json(
        """
        @profile
        def rec(n):
            if n == 0:
                return []
            out = rec(n - 1)
            out.append(bytearray(1000))
            return out
        keep = rec(5)
        """
    )
    lines = tables["rec"]
    assert lines[4]["occurrences"] == 6
    assert lines[7]["occurrences"] == 5
    # Recursive calls' bytes are counted once, by the outermost call: its line
    # 6 holds the four inner calls' bytearrays and its line 7 its own one.
    one = 1000 + BYTEARRAY
    assert 4 * one <= lines[6]["increment"] <= 4 * one + 2 * NOISE
    assert one <= lines[7]["increment"] <= one + NOISE
    assert lines[2]["occurrences"] == 6


def test_a_function_that_raises_still_gets_its_table(runner):
    script = runner.write(
        """
        try:
            profile
        except NameError:
            profile = lambda f: f

        @profile
        def raises():
            x = bytearray(1234)
            raise ValueError("boom")
        raises()
        """
    )
    plain = runner.python(str(script))
    profiled = runner.memtrim(str(script))
    assert profiled.returncode == plain.returncode == 1
    assert profiled.stderr == plain.stderr
    assert 'raise ValueError("boom")' in profiled.stderr
    assert "bytearray(1234)" in profiled.stdout
    assert "Traceback" not in profiled.stdout


def test_profile_by_name_without_decorating(runner):
    tables = runner.profile_json(
        """
        class A:
            def m(self):
                return bytearray(10**6)
        def work(n):
            data = [bytearray(1000) for _ in range(n)]
            return len(data)
        keep = A().m()
        work(100)
        """,
        "-f",
        "work",
        "-f",
        "A.m",
    )
    assert set(tables) == {"work", "A.m"}
    assert tables["A.m"][4]["increment"] == 10**6 + BYTEARRAY
    # 100 bytearrays and the list growing under them
    assert 0 <= tables["work"][6]["peak_increment"] - 100 * (1000 + BYTEARRAY) <= 2048
    assert near(tables["work"][5]["increment"], 0)  # all released (len() is a cached int)


def test_functions_of_imported_modules_by_dotted_name(runner):
    runner.write(
        """
        import functools

        def helper(n):
            return bytearray(n)

        class Box:
            def fill(self, n):
                return bytearray(n)

            @staticmethod
            def make(n):
                return bytearray(n)
        """,
        "mymod.py",
    )
    tables = runner.profile_json(
        """
        import json
        import mymod
        keep = [mymod.helper(5000), mymod.Box().fill(6000), mymod.Box.make(7000)]
        text = json.dumps([1, 2, 3])
        """,
        "-f",
        "mymod.helper",
        "-f",
        "mymod.Box.fill",
        "-f",
        "mymod.Box.make",
        "-f",
        "json.dumps",
    )
    assert set(tables) == {"helper", "Box.fill", "Box.make", "dumps"}
    assert tables["helper"][5]["increment"] == 5000 + BYTEARRAY
    assert tables["Box.fill"][9]["increment"] == 6000 + BYTEARRAY
    assert tables["Box.make"][13]["increment"] == 7000 + BYTEARRAY
    assert tables["dumps"][min(tables["dumps"])]["occurrences"] == 1  # one call of json.dumps


def test_unknown_dotted_names_are_one_warning_each_at_the_end(runner):
    script = runner.write("import json\nprint(json.dumps(1))\n")
    proc = runner.memtrim("-f", "json.nope", "-f", "os.getcwd", "-f", "nomodule.f", str(script))
    assert proc.returncode == 0
    assert proc.stdout == "1\n"
    assert proc.stderr.splitlines() == [
        "memtrim: -f os.getcwd: not a Python function (builtin_function_or_method)",
        "memtrim: -f json.nope: no such function was imported",
        "memtrim: -f nomodule.f: no such function was imported",
    ]


def test_nested_functions_and_lambdas_count_toward_the_enclosing_table(runner):
    tables = runner.profile_json(
        """
        @profile
        def outer():
            def inner():
                return bytearray(4000)
            make = lambda: bytearray(3000)
            a = inner()
            b = make()
            return a, b, inner
        keep = outer()
        keep[2]()   # called after outer returned: not outer's
        """
    )
    lines = tables["outer"]
    assert lines[5]["increment"] == 4000 + BYTEARRAY  # inner's own line
    assert lines[5]["occurrences"] == 1
    assert lines[6]["occurrences"] == 2  # the lambda's definition and its call
    assert near(lines[7]["increment"], 4000 + BYTEARRAY)  # the calling line includes it
    assert near(lines[8]["increment"], 3000 + BYTEARRAY)


def test_a_nested_function_profiled_itself_gets_its_own_table(runner):
    source = """
        @profile
        def outer():
            @profile
            def inner():
                y = bytearray(2 * 2**20)
                return y
            a = inner()
            return a
        keep = outer()
        """
    tables = runner.profile_json(source)
    assert set(tables) == {"outer", "outer.<locals>.inner"}
    two = 2 * 2**20 + BYTEARRAY
    assert tables["outer.<locals>.inner"][6]["increment"] == two
    assert tables["outer.<locals>.inner"][4]["increment"] == two
    assert near(tables["outer"][8]["increment"], two)  # still on the line calling it
    assert 6 not in tables["outer"]
    named = runner.profile_json(source.replace("@profile", ""), "-f", "outer", "-f", "inner")
    assert set(named) == {"outer", "outer.<locals>.inner"}
    assert named["outer.<locals>.inner"][6]["increment"] == two


def test_decorator_prints_after_each_call_with_precision_and_stream(runner):
    script = runner.write(
        """
        import io
        from memtrim import profile

        buf = io.StringIO()

        @profile(precision=1, stream=buf)
        def g():
            return bytearray(3 * 2**20)

        @profile
        def f(n):
            a = bytearray(n)
            return len(a)

        keep = g()
        f(2**20)
        f(2 * 2**20)
        print("BUF", buf.getvalue().count("Filename:"), "    3.0 MiB" in buf.getvalue())
        """
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Filename:") == 2  # one table per call of f
    # memory_profiler's default precision: one decimal
    assert "    1.0 MiB" in proc.stdout and "    2.0 MiB" in proc.stdout
    assert "BUF 1 True" in proc.stdout


def test_decorator_options_under_the_command_line(runner):
    script = runner.write(
        """
        import io
        buf = io.StringIO()

        @profile(precision=5, stream=buf)
        def g():
            return bytearray(3 * 2**20)

        @profile(precision=1)
        def h():
            return bytearray(2**20)

        keep = g(), h()
        print("BUF", buf.getvalue().count("Filename:"), "3.00005 MiB" in buf.getvalue())
        """
    )
    proc = runner.memtrim(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("BUF 1 True\n")
    assert proc.stdout.count("Filename:") == 1  # h's, at the end; g's went to its stream
    assert "    1.0 MiB" in proc.stdout


def test_generators_forward_send_throw_close_and_return(runner):
    script = runner.write(
        """
        import asyncio, builtins
        profile = getattr(builtins, "profile", lambda f: f)

        @profile
        def acc():
            total = 0
            try:
                while True:
                    try:
                        got = yield total
                    except KeyError:
                        got = 100
                    total += got
            except GeneratorExit:
                print("closed at", total)
                raise

        @profile
        def sub():
            r = yield from twice()
            return r

        def twice():
            x = yield 1
            return x * 2

        g = acc()
        print(next(g), g.send(5), g.throw(KeyError), g.send(1))
        g.close()
        s = sub()
        next(s)
        try:
            s.send(21)
        except StopIteration as stop:
            print("returned", stop.value)

        @profile
        async def agen():
            got = 0
            while True:
                try:
                    got = yield got + 1
                except ValueError:
                    got = -10

        async def main():
            a = agen()
            print(await a.asend(None), await a.asend(5), await a.athrow(ValueError))
            await a.aclose()

        asyncio.run(main())
        """
    )
    plain = runner.python(str(script))
    proc = runner.memtrim("--json", "out.json", str(script))
    assert proc.returncode == plain.returncode == 0, proc.stderr
    assert plain.stdout == "0 5 105 106\nclosed at 106\nreturned 42\n1 6 -9\n"
    assert proc.stdout.startswith(plain.stdout)  # then the tables
    data = json.loads((runner.tmp_path / "out.json").read_text())
    tables = {
        f["function"]: {line["lineno"]: line["occurrences"] for line in f["lines"]}
        for f in data["functions"]
    }
    source = script.read_text().splitlines()

    def at(text: str, after: int = 0) -> int:
        return next(i for i, line in enumerate(source, 1) if i > after and text in line)

    acc, agen = tables["acc"], tables["agen"]
    # started, resumed by send, throw and send; the close is not a resumption
    assert acc[at("@profile")] == 4
    assert acc[at("while True:")] == 4  # entered, then three times round
    assert acc[at("total += got")] == 3
    assert acc[at("got = 100")] == 1  # the KeyError thrown in
    assert acc[at("except KeyError:")] == 2  # that, and close()'s GeneratorExit
    assert acc[at('print("closed at"')] == 1
    sub = tables["sub"]
    assert sub[at("@profile", at("def acc"))] == 2  # started, resumed once
    assert sub[at("return r")] == 1
    first = at("async def agen")
    # asend, asend, athrow; aclose is not a resumption
    assert agen[first - 1] == 3
    assert agen[at("got = -10")] == 1
    assert agen[at("except ValueError:")] == 2


def test_a_fork_while_another_thread_runs_profiled_code(runner):
    # the child has the parent's tables, with the other thread's lines up to
    # the fork; that thread's frames did not come along
    script = runner.write(
        """
        import os, threading, time, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads

        @profile
        def worker(ev):
            x = bytearray(1000)
            ev.wait()
            return x

        ev = threading.Event()
        t = threading.Thread(target=worker, args=(ev,))
        t.start()
        time.sleep(0.3)
        pid = os.fork()
        if pid == 0:
            print("child", flush=True)
        else:
            ev.set()
            t.join()
            _, status = os.waitpid(pid, 0)
            print("child exit", os.waitstatus_to_exitcode(status), flush=True)
        """
    )
    proc = runner.memtrim(str(script))
    assert proc.returncode == 0, proc.stderr
    assert "child exit 0" in proc.stdout
    tables = proc.stdout.split("Filename:")[1:]
    assert len(tables) == 2, proc.stdout  # the child's, then the parent's
    child, parent = tables
    occurrences = {
        int(line.split()[0]): int(line.split()[7])  # after three "N MiB"
        for line in child.splitlines()
        if line.strip()[:1].isdigit() and line.count("MiB") == 3
    }
    assert occurrences[7] == 1  # bytearray(1000)
    assert occurrences[8] == 1  # ev.wait(): running at the fork
    assert 9 not in occurrences  # return x: after the fork, in the parent only
    assert "return x" in parent
