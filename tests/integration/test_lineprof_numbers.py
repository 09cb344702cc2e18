"""The line profiler's numbers, checked against allocations of known size."""

from __future__ import annotations

import sys

import pytest

MIB = 1024 * 1024
# The first time code runs under the tracer, CPython allocates tracing data
# for it (3.11: a line table, up to ~1 KiB; 3.12+: monitoring data, a few dozen
# bytes), charged to the line running it. Lines that can incur it are checked
# to within this many bytes; the others exactly.
FIRST_RUN_NOISE = 1024 if sys.version_info < (3, 12) else 256
BYTEARRAY = 56 + 1  # object header and trailing NUL of bytearray(n)


def test_list_increment_del_and_peak(runner):
    tables = runner.profile_json(
        """
        @profile
        def work():
            big = [None] * 10**7
            spike = len(bytearray(256 * 2**20))
            del big
            return spike
        work()
        """
    )
    lines = tables["work"]
    # the item array is exact; list headers may come from CPython's free list
    assert lines[4]["increment"] - 80_000_000 in (0, 56, 112)
    # the peak also saw the temporary [None] being multiplied
    assert 0 <= lines[4]["peak_increment"] - lines[4]["increment"] <= 64
    # bytearray(n) is a 56-byte object and an n+1 byte buffer, freed at once;
    # the int len() returns is made while the bytearray is still alive
    assert 0 <= lines[5]["peak_increment"] - (256 * 2**20 + BYTEARRAY) <= 64
    assert abs(lines[5]["increment"]) < 64
    # the header goes back to the free list, the item array to the allocator
    assert lines[6]["increment"] - -80_000_000 in (0, -56)
    assert lines[6]["peak_increment"] == 0
    # the first line is the call as a whole: its peak covers the bytearray on
    # top of the list; what it leaves is what its lines left (the int returned)
    assert lines[2]["peak_increment"] - (lines[4]["increment"] + 256 * 2**20) in range(0, 256)
    assert lines[2]["increment"] == sum(lines[n]["increment"] for n in (4, 5, 6, 7))
    assert lines[2]["increment"] >= 28
    assert all(line["occurrences"] == 1 for line in lines.values())


def test_text_table_shows_mib_like_the_article(runner):
    script = runner.write(
        """
        @profile
        def memory_intensive():
            small_list = [None] * 1000000
            big_list = [None] * 10000000
            del big_list
            return small_list
        memory_intensive()
        """
    )
    proc = runner.memtrim(str(script))
    assert proc.returncode == 0, proc.stderr
    rows = {
        line.split()[0]: line for line in proc.stdout.splitlines() if line[:6].strip().isdigit()
    }
    # Line, Mem usage, Increment, Peak, Occurrences: the columns in this order
    assert rows["2"].split()[2:7:2] == ["MiB"] * 3 and rows["2"].split()[7] == "1"
    assert rows["4"].split()[3:8] == ["7.629", "MiB", "7.629", "MiB", "1"]
    assert rows["5"].split()[3:8] == ["76.294", "MiB", "76.294", "MiB", "1"]
    assert rows["6"].split()[3:8] == ["-76.294", "MiB", "0.000", "MiB", "1"]
    assert rows["2"].rstrip().endswith("@profile")
    assert rows["3"].split() == ["3", "def", "memory_intensive():"]  # never "ran"
    mem = {n: float(rows[n].split()[1]) for n in ("4", "5", "6")}
    assert mem["5"] - mem["4"] == pytest.approx(76.294, abs=0.002)
    assert mem["6"] == pytest.approx(mem["4"], abs=0.002)
    assert proc.stdout.startswith(f"Filename: {script}\n\nLine #    Mem usage    Increment")


def test_the_first_row_is_what_the_call_left_allocated(runner):
    tables = runner.profile_json(
        """
        @profile
        def keeps():
            scratch = bytearray(3 * 2**20)
            kept = bytearray(10**6)
            return kept
        keep = keeps()
        """
    )
    lines = tables["keeps"]
    # the scratch buffer is a local: released with the frame, not counted
    assert lines[2]["increment"] == 10**6 + BYTEARRAY
    assert lines[2]["peak_increment"] == 3 * 2**20 + 10**6 + 2 * BYTEARRAY
    assert lines[4]["increment"] == 3 * 2**20 + BYTEARRAY


@pytest.mark.parametrize("options", [(), ("-f", "size")], ids=["decorated", "by-name"])
def test_an_argument_only_the_call_holds_dies_with_it(runner, options):
    decorator = "" if options else "@profile"
    tables = runner.profile_json(
        f"""
        {decorator}
        def size(data):
            return len(data)
        n = size(bytearray(10**6))
        """,
        *options,
    )
    first = tables["size"][2 if decorator else 3]["increment"]
    result = 28  # the int len() returns, left to the caller
    if options or sys.version_info >= (3, 12):
        # no wrapper: the frame held the only reference and released it
        assert first == result - (10**6 + BYTEARRAY)
    else:
        # 3.11's wrapper: the caller holds the argument until the call has returned
        assert first == result


def test_callees_are_charged_to_the_calling_line(runner):
    tables = runner.profile_json(
        """
        def make(n):
            return bytearray(n)

        @profile
        def caller():
            kept = make(3_000_000)
            return kept
        caller()
        """
    )
    assert 0 <= tables["caller"][7]["increment"] - (3_000_000 + BYTEARRAY) <= FIRST_RUN_NOISE
    assert "make" not in tables


def test_array_over_allocation_is_what_sys_getsizeof_says(runner):
    script = runner.write(
        """
        import array, json, sys

        @profile
        def grow():
            a = array.array('l', range(10**7))
            return a
        a = grow()
        print(json.dumps([sys.getsizeof(a), sys.getsizeof(array.array('l'))]))
        """
    )
    out = runner.tmp_path / "t.json"
    proc = runner.memtrim("--json", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    full, empty = map(int, proc.stdout.strip().split("\n")[0].strip("[]").split(","))
    import json

    (table,) = json.loads(out.read_text())["functions"]
    lines = {line["lineno"]: line for line in table["lines"]}
    # array grows its buffer with headroom: 81,940,288 bytes hold 80,000,000;
    # the engine counts the buffer and the object, as sys.getsizeof does
    assert lines[6]["increment"] - empty == full - empty == 81_940_288
    assert lines[4]["increment"] == full


def test_array_and_numpy(runner):
    pytest.importorskip("numpy")
    tables = runner.profile_json(
        """
        import array
        import numpy as np

        @profile
        def arrays():
            a = array.array('l', [0]) * 10**7
            b = np.arange(10**7)
            c = np.ones(10**6, np.complex128)
            del b
            return a, c
        keep = arrays()
        """
    )
    lines = tables["arrays"]
    # sys.getsizeof(array) == 80_000_064 (object + data)
    assert abs(lines[7]["increment"] - 80_000_064) <= FIRST_RUN_NOISE
    assert 80_000_000 <= lines[8]["increment"] <= 80_000_000 + 512  # data + the ndarray object
    assert 16_000_000 <= lines[9]["increment"] <= 16_000_000 + 512
    # `del b` gives back what line 8 made, up to the few small objects each
    # line makes or frees in passing (an int, a block from a free list)
    assert abs(lines[10]["increment"] + lines[8]["increment"]) <= 128
    assert lines[10]["increment"] <= -80_000_000


def test_mem_usage_moves_exactly_with_the_heap(runner):
    tables = runner.profile_json(
        """
        @profile
        def grow():
            a = bytearray(50 * 2**20)
            b = bytearray(20 * 2**20)
            del a
            return b
        keep = grow()
        """
    )
    lines = tables["grow"]
    assert lines[5]["mem_usage"] - lines[4]["mem_usage"] == 20 * 2**20 + BYTEARRAY
    assert lines[6]["mem_usage"] - lines[5]["mem_usage"] == -(50 * 2**20 + BYTEARRAY)
    assert lines[5]["increment"] == 20 * 2**20 + BYTEARRAY


@pytest.mark.skipif(sys.platform != "linux", reason="RSS read from /proc on Linux")
def test_mem_usage_is_the_rss_at_the_call_plus_the_exact_change(runner):
    pytest.importorskip("numpy")
    pytest.importorskip("psutil")
    script = runner.write(
        """
        import json
        import psutil

        @profile
        def f():
            rss = psutil.Process().memory_info().rss
            a = np.ones(2 * 10**6)
            return rss, a

        import numpy as np  # after f is profiled: ~10 MiB of RSS the heap never sees
        rss, a = f()
        print(json.dumps(rss))
        """
    )
    out = runner.tmp_path / "t.json"
    proc = runner.memtrim("--json", str(out), str(script))
    assert proc.returncode == 0, proc.stderr
    import json

    rss = json.loads(proc.stdout.splitlines()[0])
    lines = {line["lineno"]: line for line in json.loads(out.read_text())["functions"][0]["lines"]}
    assert abs(lines[7]["mem_usage"] - rss) < 2 * MIB
    assert lines[8]["mem_usage"] - lines[7]["mem_usage"] == lines[8]["increment"]
    assert lines[8]["increment"] >= 16 * 10**6


def test_loop_lines_count_occurrences(runner):
    tables = runner.profile_json(
        """
        @profile
        def loop():
            keep = []
            for i in range(5):
                keep.append(bytearray(1000))
            return keep
        loop()
        """
    )
    lines = tables["loop"]
    assert lines[4]["occurrences"] == 1
    assert lines[5]["occurrences"] == 6  # five iterations and the exhausted check
    assert lines[6]["occurrences"] == 5
    # five bytearrays of 56 + 1001 bytes, plus the list's item array growing
    assert 5 * 1057 <= lines[6]["increment"] <= 5 * 1057 + 256


COMPREHENSIONS = """
@profile
def comp():
    a = [bytearray(100) for i in range(1000)]
    b = [
        bytearray(200)
        for i in range(1000)
    ]
    s = {i: bytearray(50) for i in range(100)}
    t = sum(len(bytearray(10**6)) for _ in range(3))
    return a, b, s, t
keep = comp()
"""


def test_comprehensions_count_as_a_whole_on_their_first_line(runner):
    lines = runner.profile_json(COMPREHENSIONS)["comp"]
    assert lines[4]["occurrences"] == 1
    assert 1000 * (100 + BYTEARRAY) <= lines[4]["increment"] <= 1000 * (100 + BYTEARRAY) + 9000
    # the multi-line one: all on line 5, once; its other lines show nothing
    assert lines[5]["occurrences"] == 1
    assert 1000 * (200 + BYTEARRAY) <= lines[5]["increment"] <= 1000 * (200 + BYTEARRAY) + 9000
    assert not {6, 7, 8} & set(lines)
    # one 10**6 bytearray at a time, each freed before the next
    assert 0 <= lines[10]["peak_increment"] - (10**6 + BYTEARRAY) <= FIRST_RUN_NOISE + 512
    assert abs(lines[10]["increment"]) < 4096


def test_comprehension_tables_agree_across_versions(runner):
    # Python 3.12 inlines comprehensions into the function (PEP 709), 3.11
    # runs them as functions of their own: the tables must not show it.
    lines = runner.profile_json(COMPREHENSIONS)["comp"]
    assert {n: line["occurrences"] for n, line in lines.items()} == {
        2: 1,
        4: 1,
        5: 1,
        9: 1,
        10: 1,
        11: 1,
    }


def test_threads_do_not_charge_their_allocations_to_profiled_lines(runner):
    tables = runner.profile_json(
        """
        import threading, time
        stop = threading.Event()
        def churn():
            keep = []
            while not stop.is_set():
                keep.append(bytearray(10**5))
                if len(keep) > 50:
                    keep.clear()
        t = threading.Thread(target=churn)
        t.start()

        @profile
        def mine():
            a = bytearray(10**6)
            time.sleep(0.2)
            return a
        x = mine()
        stop.set()
        t.join()
        """
    )
    lines = tables["mine"]
    assert lines[15]["increment"] == 10**6 + BYTEARRAY
    assert abs(lines[16]["increment"]) < 4096  # sleep: the other thread's churn is not ours
    assert lines[16]["peak_increment"] < 4096
    assert lines[13]["increment"] == 10**6 + BYTEARRAY
