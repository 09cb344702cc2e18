"""Planted waste: a list of 1,000,000 distinct floats, each a float object and a pointer.

``array.array("d")`` holds each value in 8 bytes.
"""

import random

N = 1_000_000
rng = random.Random(0)

values = [rng.random() for _ in range(N)]  # PLANTED
print(len(values), round(sum(values), 3))
