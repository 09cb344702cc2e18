"""The fixed twin of pandas_frame.py: the cities as a category, the counts as uint8."""

import numpy
import pandas

N = 400_000
CITIES = ["Paris", "Lyon", "Nice"]

city = ["".join([CITIES[i % 3], ""]) for i in range(N)]
n = numpy.arange(N) % 100
frame = pandas.DataFrame({"city": city, "n": n}).astype({"city": "category", "n": "uint8"})
del city, n
print(frame.shape, frame["n"].max())
