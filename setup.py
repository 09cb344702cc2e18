"""Build the native engine; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

NATIVE = "src/memtrim/engine/_native/"
FLAGS = ["-O2", "-std=gnu11", "-fvisibility=hidden", "-Wall"]
ENGINE = [
    "module.c",
    "heap.c",
    "native.c",
    "arenas.c",
    "rss.c",
    "cframes.c",
    "tracer.c",
    "wrapper.c",
    "calltree.c",
    "watchdog.c",
    "term.c",
    "procfs.c",
]
HEADERS = [
    "heap.h",
    "native.h",
    "rss.h",
    "cframes.h",
    "elfspan.h",
    "listeners.h",
    "tracer.h",
    "calltree.h",
    "frames.h",
    "compat.h",
    "capi.h",
    "procfs.h",
    "hashtab.h",
]

setup(
    ext_modules=[
        Extension(
            "memtrim.engine._engine",
            sources=[NATIVE + name for name in ENGINE],
            depends=[NATIVE + name for name in HEADERS],
            extra_compile_args=FLAGS,
            libraries=["m", "dl"],
        ),
        Extension(
            "memtrim.engine._sampler",
            sources=[NATIVE + "sampler.c", NATIVE + "procfs.c"],
            depends=[NATIVE + "capi.h", NATIVE + "procfs.h"],
            extra_compile_args=[*FLAGS, "-pthread"],
            extra_link_args=["-pthread"],
        ),
        # Test helpers (raw allocations, levels read in C): not used by memtrim.
        Extension(
            "memtrim.engine._testing",
            sources=[NATIVE + "testing.c"],
            depends=[NATIVE + "capi.h"],
            extra_compile_args=[*FLAGS, "-pthread", "-Wno-deprecated-declarations"],
            extra_link_args=["-pthread"],
        ),
        Extension(
            "memtrim.engine._objects",
            sources=[NATIVE + "objects.c"],
            depends=[NATIVE + "frames.h", NATIVE + "compat.h"],
            extra_compile_args=FLAGS,
        ),
    ],
)
