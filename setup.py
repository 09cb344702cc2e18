"""Build the native engine; all metadata lives in pyproject.toml."""

from setuptools import Extension, setup

NATIVE = "src/memtrim/engine/_native/"

setup(
    ext_modules=[
        Extension(
            "memtrim.engine._engine",
            sources=[NATIVE + name for name in ("module.c", "heap.c", "tracer.c")],
            depends=[NATIVE + name for name in ("heap.h", "tracer.h", "compat.h")],
            extra_compile_args=["-O2", "-std=gnu11", "-fvisibility=hidden", "-Wall"],
        ),
    ],
)
