"""Negative control: a list of ints that later receives 2**70.

No typed array holds 2**70: no "array" advice must be given.
"""

import random

N = 1_000_000
rng = random.Random(0)

values = [rng.randrange(1000) for _ in range(N)]  # PLANTED
values.append(2**70)
print(len(values), sum(values))
