"""Planted waste: 300,000 dicts that all have the same three keys.

The fixed twin keeps the same values in tuples (a namedtuple would weigh the same).
"""

N = 300_000

rows = [{"id": i, "x": i % 100, "y": i % 7} for i in range(N)]  # PLANTED
print(len(rows), sum(row["x"] + row["y"] for row in rows))
