"""The fixed twin of dtype.py: the values are drawn as int8."""

import numpy

N = 5_000_000
rng = numpy.random.default_rng(0)

a = rng.integers(0, 100, size=N, dtype=numpy.int8)
print(a.shape, int(a.min()), int(a.max()))
