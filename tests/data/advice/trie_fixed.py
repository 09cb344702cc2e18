"""The fixed twin of trie.py: the keys are in a ``marisa_trie.Trie``."""

import marisa_trie

N = 500_000

keys = marisa_trie.Trie(f"user-{i:08d}" for i in range(N))
print(len(keys), sum(f"user-{i:08d}" in keys for i in range(0, 2 * N, 1000)))
