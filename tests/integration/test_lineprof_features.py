"""The line profiler on every kind of function users decorate."""

from __future__ import annotations

from tests.integration.test_lineprof_numbers import FIRST_RUN_NOISE as NOISE

BYTEARRAY = 56 + 1  # object header and trailing NUL of bytearray(n)


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

        keep = [K().method(), K.static(), K.klass()]
        """
    )
    assert tables["K.method"][5]["increment"] == 5000 + BYTEARRAY
    assert tables["K.static"][10]["increment"] == 6000 + BYTEARRAY
    assert tables["K.klass"][15]["increment"] == 7000 + BYTEARRAY


def test_functools_wraps_decorators_profile_the_inner_function(runner):
    tables = runner.profile_json(
        """
        import functools
        def deco(f):
            @functools.wraps(f)
            def wrapper(*a, **k):
                return f(*a, **k)
            return wrapper

        @profile
        @deco
        def inner():
            return bytearray(8000)
        keep = inner()
        """
    )
    assert list(tables) == ["inner"]
    assert tables["inner"][12]["increment"] == 8000 + BYTEARRAY


def test_generators_count_each_resumption(runner):
    tables = runner.profile_json(
        """
        @profile
        def gen():
            for i in range(3):
                yield bytearray(1000 * (i + 1))
        keep = list(gen())
        """
    )
    lines = tables["gen"]
    assert lines[5]["occurrences"] == 3
    assert lines[5]["increment"] == 6000 + 3 * BYTEARRAY
    assert lines[4]["occurrences"] == 4


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
    assert near(tables["coro"][7]["increment"], 9000 + BYTEARRAY)
    assert tables["agen"][13]["occurrences"] == 2
    assert near(tables["agen"][13]["increment"], 200 + 2 * BYTEARRAY)


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
    assert tables["work"][6]["peak_increment"] >= 100 * (1000 + BYTEARRAY)


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
            return a, b
        keep = outer()
        """
    )
    lines = tables["outer"]
    assert lines[5]["increment"] == 4000 + BYTEARRAY  # inner's own line
    assert lines[6]["occurrences"] == 2  # the lambda's definition and its call
    assert near(lines[7]["increment"], 4000 + BYTEARRAY)  # the calling line includes it
    assert near(lines[8]["increment"], 3000 + BYTEARRAY)


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
        print("BUF", buf.getvalue().count("Filename:"), "3.0 MiB" in buf.getvalue())
        """
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Filename:") == 2  # one table per call of f
    assert "    1.000 MiB" in proc.stdout and "    2.000 MiB" in proc.stdout
    assert "BUF 1 True" in proc.stdout
