"""The fixed twin of cache.py: the cache is bounded to 128 entries."""

import functools

N = 20_000


@functools.lru_cache(maxsize=128)
def render(key):
    return key.to_bytes(4, "little") * 256


total = sum(len(render(i % N)) for i in range(2 * N))
print(total, render.cache_info().currsize)
