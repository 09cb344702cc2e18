"""The fixed twin of array_floats.py: the same values in an ``array.array("d")``."""

import array
import random

N = 1_000_000
rng = random.Random(0)

values = array.array("d", (rng.random() for _ in range(N)))
print(len(values), round(sum(values), 3))
