"""Planted waste: a list of 2,000,000 small ints, each a pointer (8 bytes).

The ints in range(200) are shared small-int objects, so the waste is only the
list's pointer array: ``array.array("B")`` holds each value in one byte.
"""

import random

N = 2_000_000
rng = random.Random(0)

values = [rng.randrange(200) for _ in range(N)]  # PLANTED
print(len(values), sum(values))
