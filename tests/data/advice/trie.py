"""Planted waste: a set of 500,000 distinct keys sharing a prefix, kept only for lookups.

The fixed twin keeps the same keys in a ``marisa_trie.Trie``.
"""

N = 500_000

keys = {f"user-{i:08d}" for i in range(N)}  # PLANTED
print(len(keys), sum(f"user-{i:08d}" in keys for i in range(0, 2 * N, 1000)))
