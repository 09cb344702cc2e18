"""Planted waste: a list built only to be summed.

The list and its 3,000,000 int objects are the program's peak; the fixed twin
sums a generator expression, which holds one item at a time.
"""

N = 3_000_000

total = sum([x * x for x in range(N)])  # PLANTED
print(total)
