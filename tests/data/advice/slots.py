"""Planted waste: 300,000 instances of a plain class with three attributes.

The attribute values are small ints (shared objects): only the instances'
layout differs from the fixed twin, which declares ``__slots__``.
"""

N = 300_000


class Point:
    def __init__(self, x, y, z):
        self.x = x
        self.y = y
        self.z = z


points = [Point(i % 100, i % 7, i % 3) for i in range(N)]  # PLANTED
print(len(points), sum(p.x + p.y + p.z for p in points))
