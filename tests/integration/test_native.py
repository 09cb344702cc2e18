"""Native memory in every tool: what C libraries allocate is counted at its line.

Pillow's pixels (malloc'd in blocks by its C code), a libxml2 tree (lxml), a
ctypes call to libc's malloc, and a library loaded after the hooks went in.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig

import pytest

PIXELS = 8000 * 8000 * 4  # Image.new("RGBA", (8000, 8000)): 256,000,000 bytes of pixels

PROGRAM = """
import ctypes
from PIL import Image
from lxml import etree

img = Image.new("RGBA", (8000, 8000))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(100 << 20)
root = etree.Element("root")
for i in range(100_000):
    etree.SubElement(root, "child", attr=str(i)).text = "x" * 50
"""


def _run(runner, *options):
    pytest.importorskip("PIL")
    pytest.importorskip("lxml")
    script = runner.write(PROGRAM, "native.py")
    out = runner.tmp_path / "out.json"
    proc = runner.memtrim(
        "run", "-q", "--force", "-o", "out.memtrim", "--json", str(out), *options, str(script)
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def _line(view, lineno):
    return [
        s for s in view["sites"] if s["lineno"] == lineno and s["filename"].endswith("native.py")
    ]


@pytest.mark.parametrize("exact", [False, True])
def test_run_charges_native_memory_to_its_lines(runner, exact):
    data = _run(runner, *(["--exact"] if exact else []))
    peak = data["peak"]
    assert data["meta"]["native"] is True
    # Pillow's pixels are in PIL's Image.new (the line of the C call), reached from line 6
    (pillow,) = [s for s in peak["sites"] if s["function"] == "new" and "PIL" in s["filename"]]
    assert PIXELS <= pillow["bytes"] <= PIXELS * 1.05
    assert pillow["native"] >= PIXELS
    if exact:
        assert [f["lineno"] for f in pillow["stack"] if f["filename"].endswith("native.py")] == [6]
    # the ctypes call released the GIL: the block is still its line's, exactly
    (ctypes_line,) = _line(peak, 9)
    assert 100 << 20 <= ctypes_line["native"] <= ctypes_line["bytes"] <= (100 << 20) + 2048
    # libxml2's nodes: native, at the line that builds them
    (tree,) = _line(peak, 12)
    assert tree["native"] >= 100_000 * 120
    # every site's native part is part of its bytes; the view says its total
    assert all(0 <= s["native"] <= s["bytes"] for s in peak["sites"])
    assert peak["native"] >= PIXELS + (100 << 20)


def test_python_only_leaves_native_memory_out(runner):
    data = _run(runner, "--python-only")
    assert data["meta"]["native"] is False
    assert _line(data["peak"], 9) == []
    assert all(s["native"] == 0 for s in data["peak"]["sites"])
    assert data["peak"]["bytes"] < 50 << 20


def test_the_summary_shows_a_native_column(runner):
    pytest.importorskip("PIL")
    script = runner.write(
        """
        from PIL import Image
        img = Image.new("RGBA", (4000, 4000))
        """,
        "pil.py",
    )
    proc = runner.memtrim("run", "--force", "-o", "x.memtrim", str(script))
    assert proc.returncode == 0, proc.stderr
    assert "native" in proc.stderr
    assert "61.0 MiB" in proc.stderr  # 4000 * 4000 * 4 bytes


def test_the_line_profiler_counts_native_increments(runner):
    pytest.importorskip("PIL")
    tables = runner.profile_json(
        """
        from PIL import Image

        @profile
        def make():
            img = Image.new("RGBA", (8000, 8000))
            return img

        img = make()
        """
    )
    line = tables["make"][6]
    assert PIXELS <= line["increment"] <= PIXELS * 1.05


def test_the_line_profiler_with_python_only(runner):
    pytest.importorskip("PIL")
    tables = runner.profile_json(
        """
        from PIL import Image

        @profile
        def make():
            img = Image.new("RGBA", (8000, 8000))
            return img

        img = make()
        """,
        "--python-only",
    )
    assert tables["make"][6]["increment"] < 1 << 20


def test_track_and_memory_usage_see_native_memory(runner):
    pytest.importorskip("PIL")
    script = runner.write(
        """
        import json
        import memtrim
        from PIL import Image

        def make():
            return Image.new("RGBA", (8000, 8000))

        with memtrim.track() as t:
            img = make()
        with memtrim.track(native=False) as python_only:
            other = make()
        usage = memtrim.memory_usage((make, (), {}), interval=0.01)
        print(json.dumps([t.peak, python_only.peak, max(usage)]))
        """
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    peak, python_only, usage_mib = json.loads(proc.stdout)
    assert PIXELS <= peak <= PIXELS * 1.05
    assert python_only < 1 << 20
    assert usage_mib * 2**20 >= PIXELS


LIBRARY = r"""
#include <stdlib.h>
#include <string.h>
void *grab(size_t n) { void *p = malloc(n); if (p) memset(p, 1, n); return p; }
void give(void *p) { free(p); }
"""


def _compile(tmp_path):
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip("no C compiler")
    source = tmp_path / "grab.c"
    source.write_text(LIBRARY)
    lib = tmp_path / "libgrab.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(source)], check=True)
    return lib


def test_a_library_loaded_after_the_hooks_is_tracked(runner):
    lib = _compile(runner.tmp_path)
    script = runner.write(
        f"""
        import ctypes, json
        from memtrim.engine import hooks

        with hooks.acquire("test", native=True):
            grab = ctypes.PyDLL({str(lib)!r})  # dlopen'ed now; keeps the GIL
            grab.grab.restype = ctypes.c_void_p
            grab.grab.argtypes = [ctypes.c_size_t]
            grab.give.argtypes = [ctypes.c_void_p]
            n0 = hooks.native_level()
            p = grab.grab(12_345_678)
            grown = hooks.native_level() - n0
            grab.give(p)
            print(json.dumps([grown, hooks.native_level() - n0]))
        """
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [12_345_678, 0]


def test_native_frames_go_below_the_python_line_in_the_sampled_stacks(runner):
    pytest.importorskip("PIL")
    script = runner.write(
        """
        from PIL import Image
        img = Image.new("RGBA", (4000, 4000))
        """,
        "frames.py",
    )
    proc = runner.memtrim(
        "run", "-q", "--native", "--force", "-o", "frames.memtrim", "--json", "f.json", str(script)
    )
    assert proc.returncode == 0, proc.stderr
    import memtrim
    from memtrim.run.capture import is_cframe

    capture = memtrim.load(runner.tmp_path / "frames.memtrim")
    assert capture.meta["native_frames"] is True
    # the C functions of Pillow that got the pixels, under Image.new's line
    below = []
    for index, node in enumerate(capture.stacks):
        frame = capture.frames[node.frame] if node.frame >= 0 else None
        if frame is not None and is_cframe(frame) and node.peak.bytes > 0:
            below.append(capture.stack_of(index, capture.stacks))
    assert below, "no C frame in the sampled stacks"
    heaviest = max(below, key=len)
    names = [f.function for f in heaviest]
    assert "new" in names and "_imaging" in heaviest[-1].filename
    python = [f for f in heaviest if not is_cframe(f)]
    assert names.index("new") == len(python) - 1  # C frames only below the Python ones
    # per-line figures stay exact and Python's: no C frame is a site
    data = json.loads((runner.tmp_path / "f.json").read_text())
    site = max(
        (s for s in data["peak"]["sites"] if s["function"] == "new"), key=lambda s: s["bytes"]
    )
    assert 4000 * 4000 * 4 <= site["bytes"] <= 4000 * 4000 * 4 * 1.05
    assert all(s["lineno"] > 0 for s in data["peak"]["sites"])


def test_native_frames_want_the_default_mode(runner):
    script = runner.write("x = 1\n", "x.py")
    for other in ("--exact", "--python-only"):
        proc = runner.memtrim("run", "--native", other, "--force", str(script))
        assert proc.returncode == 2
        assert proc.stderr.strip() == (
            f"memtrim: --native adds C frames to the sampled stacks: not with {other}"
        )


def test_the_line_profiler_and_track_see_lxml_and_ctypes(runner):
    pytest.importorskip("lxml")
    tables = runner.profile_json(
        """
        import ctypes
        from lxml import etree

        @profile
        def build():
            root = etree.Element("root")
            for i in range(50_000):
                etree.SubElement(root, "child", attr=str(i))
            libc = ctypes.CDLL(None)
            libc.malloc.restype = ctypes.c_void_p
            block = libc.malloc(50_000_000)
            return root, block

        kept = build()
        """
    )
    lines = tables["build"]
    assert lines[9]["increment"] >= 50_000 * 100  # libxml2's nodes and attributes
    # the GIL released: all 50 MB; around them ctypes's own small objects, which
    # vary with the hash seed (-27 B or +32 B, with LINE events as with branch events)
    assert abs(lines[12]["increment"] - 50_000_000) <= 4096
    script = runner.write(
        """
        import ctypes, json
        import memtrim
        from lxml import etree

        with memtrim.track() as t:
            # looked up under the hooks: a ctypes function looked up before them
            # keeps the real malloc's address (docs/native.md)
            libc = ctypes.CDLL(None)
            libc.malloc.restype = ctypes.c_void_p
            block = libc.malloc(30_000_000)
            root = etree.Element("root")
            for i in range(50_000):
                etree.SubElement(root, "child")
        print(json.dumps(t.peak))
        """,
        "tracked.py",
    )
    proc = runner.python(str(script))
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) >= 30_000_000 + 50_000 * 100
