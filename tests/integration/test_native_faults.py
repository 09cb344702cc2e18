"""The native hooks in hostile places: signal handlers, fork, dlclose, a preloaded allocator.

Each program runs under ``memtrim run`` (native tracking on) and must end as
it would without memtrim, with figures that stay true.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig

import pytest


def _cc():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip("no C compiler")
    return cc


def _compile(tmp_path, name, source, *flags):
    path = tmp_path / f"{name}.c"
    path.write_text(source)
    lib = tmp_path / f"lib{name}.so"
    subprocess.run(
        [_cc(), "-shared", "-fPIC", "-O1", *flags, "-o", str(lib), str(path)], check=True
    )
    return lib


def _run(runner, source, *options, env=None, timeout=120):
    script = runner.write(source, "prog.py")
    out = runner.tmp_path / "out.json"
    args = ["run", "-q", "--force", "-o", "out.memtrim", "--json", str(out), *options, str(script)]
    proc = runner.memtrim(*args, timeout=timeout) if env is None else _with_env(runner, args, env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    data["_source"] = script.read_text()
    return data, proc


def _with_env(runner, args, env):
    from tests.conftest import subprocess_env

    full = {**subprocess_env(), **env}
    return subprocess.run(
        [shutil.which("python") or "python", "-m", "memtrim", *args],
        capture_output=True,
        text=True,
        cwd=runner.tmp_path,
        env=full,
        timeout=120,
    )


def _line(data, view, marker):
    """Bytes of a view at the line of prog.py that has ``marker`` in it."""
    source = data["_source"].splitlines()
    (lineno,) = [i for i, text in enumerate(source, 1) if marker in text]
    return sum(
        s["bytes"]
        for s in data[view]["sites"]
        if s["lineno"] == lineno and s["filename"].endswith("prog.py")
    )


SLACK = 1024  # the Python objects of the line (an int, the globals dict growing)


def test_a_library_that_allocates_in_a_signal_handler(runner):
    lib = _compile(runner.tmp_path, "bump", BUMP)
    for mode in ((), ("--exact",)):
        data, proc = _run(
            runner,
            """
            from memtrim.engine import _testing as t
            t.c_signal_storm(50)  # SIGALRM every 50 us; its C handler mallocs and frees
            keep = []
            for i in range(30000):
                keep.append(bytearray(100_000))
                p = t.c_alloc("malloc", 300_000)
                q = t.c_alloc("mmap", 1 << 20)
                t.c_free(p)
                t.c_munmap(q, 1 << 20)
                del keep[:-5]
            print(t.c_signal_storm(0))
            kept = t.c_alloc("malloc", 7_000_000)  # kept
            """,
            *mode,
            env={"LD_PRELOAD": str(lib)},
        )
        assert int(proc.stdout) > 100  # the handler ran, often, inside the program's allocations
        assert 7_000_000 <= _line(data, "at_exit", "# kept") <= 7_000_000 + SLACK
        assert _line(data, "at_exit", 't.c_alloc("mmap"') < SLACK  # the int left in q


def test_fork_while_other_threads_allocate(runner):
    data, _ = _run(
        runner,
        """
        import os, threading, warnings
        from memtrim.engine import _testing as t
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        stop = False
        def churn():
            while not stop:
                t.c_free(t.c_alloc_nogil(50_000))  # without the GIL: heap.c's no-GIL lock
                t.c_free(t.c_alloc("malloc", 70_000))
        workers = [threading.Thread(target=churn) for _ in range(3)]
        for w in workers:
            w.start()
        codes = []
        for _ in range(30):
            pid = os.fork()
            if pid == 0:
                p = t.c_alloc("malloc", 1 << 20)
                t.c_free(p)
                t.c_free(t.c_alloc_in_thread(4096))
                os._exit(7)
            codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        stop = True
        for w in workers:
            w.join()
        assert codes == [7] * 30, codes
        kept = t.c_alloc("calloc", 3_000_000)
        """,
        timeout=120,
    )
    assert 3_000_000 <= _line(data, "at_exit", "kept =") <= 3_000_000 + SLACK


GRAB = r"""
#include <stdlib.h>
#include <string.h>
void *grab(size_t n) { void *p = malloc(n); if (p) memset(p, 1, n); return p; }
void give(void *p) { free(p); }
"""


def test_dlclose_of_a_patched_library(runner):
    lib = _compile(runner.tmp_path, "grab", GRAB)
    copy = runner.tmp_path / "libgrab2.so"
    shutil.copy(lib, copy)
    data, proc = _run(
        runner,
        f"""
        import ctypes, _ctypes
        def load(path):
            lib = ctypes.PyDLL(path)
            lib.grab.restype = ctypes.c_void_p
            lib.grab.argtypes = [ctypes.c_size_t]
            lib.give.argtypes = [ctypes.c_void_p]
            return lib
        first = load({str(lib)!r})
        first.give(first.grab(1000))
        kept = first.grab(2_000_000)
        _ctypes.dlclose(first._handle)
        second = load({str(copy)!r})
        again = second.grab(5_000_000)
        second.give(kept)
        print("ok")
        """,
    )
    assert proc.stdout.strip() == "ok"
    assert _line(data, "at_exit", "kept = ") < SLACK  # given back through the other library
    assert 5_000_000 <= _line(data, "at_exit", "again = ") <= 5_000_000 + SLACK


BUMP = r"""
/* A preloaded allocator of its own (as jemalloc or tcmalloc would be): small
 * blocks from its own mmap'ed arena (bump allocation, a size header, free
 * keeps nothing), big ones from glibc.  Small blocks take one atomic add and
 * no lock, so a signal handler may allocate them: what a hook does then is
 * ours alone. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

extern void *__libc_malloc(size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

#define ARENA ((size_t)1 << 30)
#define SMALL 4096
static char *arena, *top;

static int ours(void *p) { return arena && (char *)p >= arena && (char *)p < arena + ARENA; }

__attribute__((constructor)) static void init(void)
{
    void *got = mmap(NULL, ARENA, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (got != MAP_FAILED) top = arena = got;
}

static void *bump(size_t align, size_t n)
{
    if (align < 16) align = 16;
    if (n > SMALL || align > 64 || arena == NULL) {
        void *p = __libc_memalign(align, n + align);
        if (!p) return NULL;
        ((size_t *)((char *)p + align))[-1] = n;
        ((size_t *)((char *)p + align))[-2] = align;
        return (char *)p + align;
    }
    /* one atomic add: a signal handler's call in the middle of ours is safe */
    char *start = __atomic_fetch_add(&top, n + align + 16, __ATOMIC_RELAXED);
    uintptr_t at = ((uintptr_t)start + 16 + align - 1) & ~(uintptr_t)(align - 1);
    if (at + n > (uintptr_t)(arena + ARENA)) { errno = ENOMEM; return NULL; }
    ((size_t *)at)[-1] = n;
    return (void *)at;
}
void *malloc(size_t n) { return bump(16, n); }
void free(void *p) { if (p && !ours(p)) __libc_free((char *)p - ((size_t *)p)[-2]); }
void *calloc(size_t a, size_t b) {
    void *p = bump(16, a * b);
    if (p) memset(p, 0, a * b);
    return p;
}
void *realloc(void *p, size_t n) {
    void *q = bump(16, n);
    if (p && q) { size_t old = ((size_t *)p)[-1]; memcpy(q, p, old < n ? old : n); free(p); }
    return q;
}
void *memalign(size_t a, size_t n) { return bump(a, n); }
void *aligned_alloc(size_t a, size_t n) { return bump(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = bump(a, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void *valloc(size_t n) { return bump(4096, n); }
void *pvalloc(size_t n) { return bump(4096, (n + 4095) & ~(size_t)4095); }
size_t malloc_usable_size(void *p) { return p ? ((size_t *)p)[-1] : 0; }
"""


def test_a_program_that_preloads_its_own_allocator(runner):
    lib = _compile(runner.tmp_path, "bump", BUMP)
    data, proc = _run(
        runner,
        """
        from memtrim.engine import _testing as t
        a = t.c_alloc("malloc", 6_000_000)
        b = t.c_alloc("posix_memalign", 4_000_000)
        t.c_free(b)
        data = bytearray(3_000_000)
        print("ok")
        """,
        env={"LD_PRELOAD": str(lib)},
    )
    assert proc.stdout.strip() == "ok"
    assert data["meta"]["native"] is True
    assert 6_000_000 <= _line(data, "at_exit", "a = t.") <= 6_000_000 + SLACK
    assert _line(data, "at_exit", "b = t.") < SLACK
    assert 3_000_000 <= _line(data, "at_exit", "data = ") <= 3_000_000 + SLACK


def test_native_memory_survives_into_a_forked_child_capture(runner):
    data, _ = _run(
        runner,
        """
        import os
        from memtrim.engine import _testing as t
        pid = os.fork()
        if pid == 0:
            t.c_alloc("malloc", 2_000_000)
            os._exit(0)
        os.waitpid(pid, 0)
        kept = t.c_alloc("malloc", 1_000_000)
        """,
        "--follow-fork",
    )
    assert 1_000_000 <= _line(data, "at_exit", "kept = ") <= 1_000_000 + SLACK
    children = [
        p
        for p in os.listdir(runner.tmp_path)
        if p.startswith("out.") and p.endswith(".memtrim") and p != "out.memtrim"
    ]
    assert len(children) == 1, children
    proc = runner.memtrim("report", "--json", "child.json", children[0])
    assert proc.returncode == 0, proc.stderr
    sites = json.loads((runner.tmp_path / "child.json").read_text())["at_exit"]["sites"]
    assert any(2_000_000 <= s["bytes"] <= 2_000_000 + SLACK and s["native"] for s in sites)


PLUGIN = r"""
#include <stdlib.h>
#include <string.h>
void *plugin_grab(size_t n) { void *p = malloc(n); if (p) memset(p, 2, n); return p; }
"""

HOST = r"""
#include <dlfcn.h>
#include <stddef.h>
/* dlopen by bare name: found through this library's RUNPATH ($ORIGIN/plugins) */
void *host_grab(size_t n)
{
    void *lib = dlopen("libplugin.so", RTLD_NOW);
    if (lib == NULL) return NULL;
    void *(*grab)(size_t) = (void *(*)(size_t))dlsym(lib, "plugin_grab");
    return grab ? grab(n) : NULL;
}
"""


def test_a_library_that_dlopens_by_name_through_its_runpath(runner):
    plugins = runner.tmp_path / "plugins"
    plugins.mkdir()
    _compile(plugins, "plugin", PLUGIN)
    host = _compile(
        runner.tmp_path, "host", HOST, "-Wl,--enable-new-dtags,-rpath,$ORIGIN/plugins", "-ldl"
    )
    data, proc = _run(
        runner,
        f"""
        import ctypes
        host = ctypes.PyDLL({str(host)!r})
        host.host_grab.restype = ctypes.c_void_p
        host.host_grab.argtypes = [ctypes.c_size_t]
        kept = host.host_grab(4_000_000)
        print(bool(kept))
        """,
    )
    assert proc.stdout.strip() == "True"  # found where the loader would find it
    assert 4_000_000 <= _line(data, "at_exit", "kept = ") <= 4_000_000 + SLACK
