"""The fixed twin of array_ints.py: the same values in an ``array.array("B")``."""

import array
import random

N = 2_000_000
rng = random.Random(0)

values = array.array("B", (rng.randrange(200) for _ in range(N)))
print(len(values), sum(values))
