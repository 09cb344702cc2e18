"""Planted waste: a DataFrame with an object column of 3 city names (a distinct str object
per row, as a CSV reader makes them) and an int64 column of values below 100.

The fixed twin stores the cities as a category and the counts as uint8.
"""

import numpy
import pandas

N = 400_000
CITIES = ["Paris", "Lyon", "Nice"]

city = ["".join([CITIES[i % 3], ""]) for i in range(N)]
n = numpy.arange(N) % 100
frame = pandas.DataFrame({"city": city, "n": n})  # PLANTED
del city, n
print(frame.shape, frame["n"].max())
