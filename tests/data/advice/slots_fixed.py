"""The fixed twin of slots.py: the class declares ``__slots__``."""

N = 300_000


class Point:
    __slots__ = ("x", "y", "z")

    def __init__(self, x, y, z):
        self.x = x
        self.y = y
        self.z = z


points = [Point(i % 100, i % 7, i % 3) for i in range(N)]
print(len(points), sum(p.x + p.y + p.z for p in points))
