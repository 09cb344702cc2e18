"""Planted waste: an unbounded ``lru_cache`` keeps a 1 KiB value per distinct argument.

20,000 distinct arguments, each called twice: all 20,000 values stay in the
cache to the end. The fixed twin bounds the cache to 128 entries.
"""

import functools

N = 20_000


@functools.lru_cache(maxsize=None)  # noqa: UP033 (the spelling the advisor must see)
def render(key):
    return key.to_bytes(4, "little") * 256  # PLANTED


total = sum(len(render(i % N)) for i in range(2 * N))
print(total, render.cache_info().currsize)
