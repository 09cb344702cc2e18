"""Negative control: a bounded ``lru_cache`` (128 entries of 64 KiB: 8 MiB at exit).

The cache holds more than the advice threshold but is bounded: no "cache"
advice must point at the line that makes its values.
"""

import functools

N = 5_000


@functools.lru_cache(maxsize=128)
def render(key):
    return key.to_bytes(4, "little") * 16384  # PLANTED


total = sum(len(render(i % N)) for i in range(2 * N))
print(total, render.cache_info().currsize)
