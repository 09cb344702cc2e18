"""Planted waste: 5,000,000 values in range(100) stored as int64.

The values fit int8: the fixed twin draws them straight into an int8 array
(numpy's generator writes into the output array, with no temporary as large).
"""

import numpy

N = 5_000_000
rng = numpy.random.default_rng(0)

a = rng.integers(0, 100, size=N, dtype=numpy.int64)  # PLANTED
print(a.shape, int(a.min()), int(a.max()))
