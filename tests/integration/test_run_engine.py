"""`memtrim run`: what the engine keeps (and does not keep) while it records."""

from __future__ import annotations

import json
import os
import signal

import pytest

from memtrim.run import capture as capture_file


def run_json(runner, source, *options, name="script.py", expect=0):
    script = runner.write(source, name)
    out = runner.tmp_path / "out.json"
    cap = runner.tmp_path / "out.memtrim"
    proc = runner.memtrim(
        "run", "-q", "--force", "-o", str(cap), "--json", str(out), *options, str(script)
    )
    assert proc.returncode == expect, proc.stderr
    return json.loads(out.read_text()), proc


def line_bytes(view, lineno, filename="script.py"):
    return sum(
        s["bytes"]
        for s in view["sites"]
        if s["lineno"] == lineno and s["filename"].endswith(filename)
    )


@pytest.mark.parametrize("mode", [[], ["--exact"]])
def test_code_objects_die_when_the_program_drops_them(runner, mode):
    # The engine names code by copied-out slots: it keeps no code object alive.
    _, proc = run_json(
        runner,
        """
        import gc, weakref
        refs = []
        for i in range(200):
            ns = {}
            source = f"def f{i}():\\n    return [0] * 10\\nx = f{i}()"
            exec(compile(source, f"gen{i}.py", "exec"), ns)
            refs.append(weakref.ref(ns["f" + str(i)].__code__))
            del ns
        gc.collect()
        print("alive", sum(r() is not None for r in refs))
        """,
        *mode,
    )
    assert proc.stdout.strip() == "alive 0"


def test_code_compiled_again_shares_its_line(runner):
    # 5,000 code objects from one string: one line in the profile, exact total.
    data, _ = run_json(
        runner,
        """
        keep = []
        for i in range(5000):
            keep.append(eval("bytearray(1000)"))
        """,
    )
    # (the at-exit view: the peak comes while the last eval compiles, before its bytearray)
    evals = [s for s in data["at_exit"]["sites"] if s["filename"] == "<string>"]
    assert len(evals) == 1
    assert evals[0]["bytes"] == 5000 * (56 + 1001)  # bytearray(n): 56 + n + 1 bytes
    assert data["meta"]["tree_full_blocks"] == 0


def test_a_late_line_is_attributed_after_much_generated_code(runner):
    data, _ = run_json(
        runner,
        """
        for i in range(20000):
            ns = {}
            source = f"def f{i}():\\n    return [0] * 10\\nx = f{i}()"
            exec(compile(source, f"gen{i}.py", "exec"), ns)
            del ns
        big = bytearray(20_000_000)
        """,
    )
    assert line_bytes(data["peak"], 7) == 20_000_057
    assert data["peak"]["sites"][0]["lineno"] == 7


def test_exact_mode_keeps_what_numpy_allocates_while_imported(runner):
    pytest.importorskip("numpy")
    data, _ = run_json(runner, "import numpy\n", "--exact")
    peak = data["peak"]
    in_lines = sum(s["bytes"] for s in peak["sites"])
    assert peak["attributed"] >= 0.99 * peak["bytes"]
    # the import line carries it: numpy's C init runs under memtrim's import hook
    assert in_lines >= 0.7 * peak["bytes"]
    assert not any("memtrim" in f["filename"] for s in peak["sites"] for f in s["stack"])


NOGIL = """
import ctypes
lib = ctypes.CDLL(None)  # calls through CDLL release the GIL
lib.PyMem_RawMalloc.restype = ctypes.c_void_p
lib.PyMem_RawMalloc.argtypes = [ctypes.c_size_t]
lib.PyMem_RawFree.argtypes = [ctypes.c_void_p]
p = lib.PyMem_RawMalloc(30_000_000)
if FREE:
    lib.PyMem_RawFree(p)
"""


@pytest.mark.parametrize("free", [False, True])
@pytest.mark.parametrize("exact", [False, True])
def test_blocks_allocated_with_the_gil_released_are_charged_to_their_line(runner, free, exact):
    # The thread released the GIL inside a C call: its Python line is still
    # known, and the block (a Python-allocator block, not native) is its.
    data, _ = run_json(runner, f"FREE = {free}\n" + NOGIL, *(["--exact"] if exact else []))
    # the block, and the int and ctypes objects of the call (a few hundred bytes)
    (line,) = [
        s
        for s in data["allocated"]["sites"]
        if s["lineno"] == 8 and s["filename"].endswith("script.py")
    ]
    assert 30_000_000 <= line["bytes"] <= 30_000_000 + 512
    assert line["native"] == 0
    at_exit = line_bytes(data["at_exit"], 8)
    if free:
        assert at_exit < 512
        assert data["at_exit"]["bytes"] < 1_000_000
    else:
        assert 30_000_000 <= at_exit <= 30_000_000 + 512
    for view in ("at_exit", "allocated"):
        reasons = {u["reason"] for u in data[view]["unattributed"]}
        assert "allocated without the GIL" not in reasons


THREAD_WITHOUT_PYTHON = """
from memtrim.engine import _testing
p = _testing.c_alloc_in_thread(30_000_000)
if FREE:
    _testing.c_free(p)
"""


@pytest.mark.parametrize("free", [False, True])
def test_blocks_of_threads_without_python_are_counted_apart(runner, free):
    data, _ = run_json(runner, f"FREE = {free}\n" + THREAD_WITHOUT_PYTHON)
    reason = "a thread that never ran Python"
    native = [u for u in data["at_exit"]["unattributed"] if u["reason"] == reason]
    if free:
        assert native == []
        assert data["at_exit"]["bytes"] < 1_000_000
    else:
        # charged to the thread, under its own name (pthread_setname_np)
        # named, with the Python line that started it (pthread_create under the hooks)
        assert [(u["thread"], u["bytes"], u["count"]) for u in native] == [
            ("native thread mt-native (started at script.py:4)", 30_000_000, 1)
        ]
    allocated = [u for u in data["allocated"]["unattributed"] if u["reason"] == reason]
    assert [(u["bytes"], u["count"]) for u in allocated] == [(30_000_000, 1)]
    threads = {t["name"]: t["bytes"] for t in data["allocated"]["threads"]}
    assert threads["native thread mt-native (started at script.py:4)"] == 30_000_000


def test_threads_keep_their_names_after_they_end(runner):
    data, _ = run_json(
        runner,
        """
        import threading, time
        keep = []
        def work(n):
            keep.append(bytearray(n))
        threads = [threading.Thread(target=work, args=(i * 1_000_000,), name=f"worker-{i}")
                   for i in (1, 2, 3)]
        for t in threads:
            t.start()
            t.join()  # one after the other: the idents are reused
        late = threading.Thread(target=time.sleep, args=(0.3,), name="sleeper", daemon=True)
        late.start()
        """,
    )
    threads = {t["name"]: t["bytes"] for t in data["at_exit"]["threads"]}
    for i in (1, 2, 3):
        # bytearray(n): 56 + n + 1 bytes, plus a few small blocks the thread left
        # (the list growing, the thread's own bookkeeping)
        assert i * 1_000_000 + 57 <= threads[f"worker-{i}"] <= i * 1_000_000 + 57 + 512


def test_module_found_from_the_current_directory_like_python_m(runner):
    # -P: sys.path[0] is not the current directory, as under the `memtrim` script
    (runner.tmp_path / "pkg").mkdir()
    runner.write("import sys\nprint('main', sys.argv[1:])\n", "pkg/__main__.py")
    runner.write("", "pkg/__init__.py")
    proc = runner.python(
        "-P", "-m", "memtrim", "run", "-q", "--force", "-o", "m.memtrim", "-m", "pkg", "x"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "main ['x']\n"


def test_a_package_imported_by_m_is_profiled(runner):
    (runner.tmp_path / "pkg2").mkdir()
    runner.write("blob = bytearray(10_000_000)\n", "pkg2/__init__.py")
    runner.write("print('sub')\n", "pkg2/sub.py")
    out = runner.tmp_path / "m.json"
    proc = runner.memtrim(
        "run", "-q", "--force", "-o", "m.memtrim", "--json", str(out), "-m", "pkg2.sub"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert line_bytes(data["peak"], 1, "__init__.py") == 10_000_057


def test_a_package_that_fails_on_import_fails_as_under_python(runner):
    (runner.tmp_path / "pkg3").mkdir()
    runner.write("1 / 0\n", "pkg3/__init__.py")
    runner.write("", "pkg3/sub.py")
    plain = runner.python("-m", "pkg3.sub")
    proc = runner.memtrim("run", "-q", "--force", "-o", "m.memtrim", "-m", "pkg3.sub")
    assert proc.returncode == plain.returncode == 1
    assert proc.stderr.replace(" -m memtrim", "") == plain.stderr.replace(" -m memtrim", "")


@pytest.mark.parametrize(("ending", "status"), [("", 2), ("raise SystemExit(4)", 4)])
def test_an_output_that_cannot_be_written_at_the_end(runner, ending, status):
    outdir = runner.tmp_path / "out"
    outdir.mkdir()
    script = runner.write(
        f"import shutil\nshutil.rmtree({str(outdir)!r})\nprint('done')\n{ending}\n"
    )
    proc = runner.memtrim("run", "-q", "-o", str(outdir / "x.memtrim"), str(script))
    assert proc.returncode == status
    assert proc.stdout == "done\n"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memtrim: cannot write"), proc.stderr


def test_limit_then_the_program_goes_on_it_is_stopped_with_a_profile(runner):
    script = runner.write(
        """
        hog = []
        def grow():
            while True:
                hog.append(b"x" * (10 * 2**20))
        while True:
            try:
                grow()
            except MemoryError:
                print("caught", flush=True)
        """
    )
    cap = runner.tmp_path / "l.memtrim"
    proc = runner.memtrim("run", "-q", "--force", "--limit", "150M", "-o", str(cap), str(script))
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout == "caught\n"
    assert "went on past the --limit" in proc.stderr
    capture = capture_file.read(str(cap))
    assert capture.meta["exit"]["kind"] == "limit"
    top = capture_file.sites(capture, "peak", 1)[0]
    assert top.frame.lineno == 5 and top.bytes >= 150 * 2**20


def test_posix_exit_keeps_the_capture(runner):
    script = runner.write("import posix\nkeep = bytearray(1000)\nposix._exit(3)\n")
    cap = runner.tmp_path / "p.memtrim"
    proc = runner.memtrim("run", "-q", "--force", "-o", str(cap), str(script))
    assert proc.returncode == 3
    capture = capture_file.read(str(cap))
    assert capture.meta["exit"] == {"kind": "os._exit", "code": 3}


def test_a_forked_child_names_its_parent(runner):
    script = runner.write(
        "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\n"
        "print(os.getpid())\n"
    )
    cap = runner.tmp_path / "f.memtrim"
    proc = runner.memtrim("run", "-q", "--follow-fork", "-o", str(cap), str(script))
    assert proc.returncode == 0, proc.stderr
    parent = int(proc.stdout)
    children = [p for p in runner.tmp_path.iterdir() if p.name.startswith("f.") and p != cap]
    assert len(children) == 1
    child = capture_file.read(str(children[0]))
    assert child.meta["parent_pid"] == parent
    assert child.meta["pid"] != parent


def test_summary_shows_the_stacks_of_the_peak_lines(runner):
    script = runner.write(
        """
        def make(n):
            return bytearray(n)
        def a():
            return make(3_000_000)
        def b():
            return make(1_000_000)
        x, y = a(), b()
        """
    )
    proc = runner.memtrim("run", "--exact", "--force", "-o", "s.memtrim", str(script))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "Stacks at the peak of the top lines:" in err
    assert "2.9 MiB  <module> (script.py:8) → a (script.py:5) → make (script.py:3)" in err
    assert "976.6 KiB  <module> (script.py:8) → b (script.py:7) → make (script.py:3)" in err


def test_no_program_memory_is_lost_to_memtrim_frames(runner):
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    data, _ = run_json(runner, "import json\nkeep = [dict(a=i) for i in range(10000)]\n", "--exact")
    for view in ("peak", "at_exit", "allocated"):
        frames = {f["filename"] for s in data[view]["sites"] for f in s["stack"]}
        assert not any("/memtrim/" in name for name in frames), view


def test_direct_recursion_is_folded_in_stacks(runner):
    data, _ = run_json(
        runner,
        """
        def build(depth):
            if depth == 0:
                return []
            return [bytearray(1000), build(depth - 1), build(depth - 1)]
        def main():
            return build(12)
        tree = main()
        """,
        "--exact",
    )
    site = next(s for s in data["at_exit"]["sites"] if s["lineno"] == 5)
    assert [f["function"] for f in site["stack"]] == ["<module>", "main", "build"]
    assert site["bytes"] >= (2**12 - 1) * 1057  # 4,095 bytearrays, exact
    capture = capture_file.read(str(runner.tmp_path / "out.memtrim"))
    assert len(capture.nodes) < 50  # not one stack per node of the tree
