"""Planted waste: 1,000,000 strings made at run time with only 50 distinct values.

Each is a new str object (strings built at run time are not interned); the
fixed twin pools them through a dict, so equal strings share one object.
"""

N = 1_000_000

values = ["-".join(["status", str(i % 50)]) for i in range(N)]  # PLANTED
print(len(values), len(set(values)))
