"""Negative control: instances whose attribute sets vary.

Every 10th instance gets an extra attribute after it is made: no "slots"
advice must point at the line that makes them.
"""

N = 300_000


class Item:
    def __init__(self, a, b):
        self.a = a
        self.b = b


items = [Item(i % 100, i % 7) for i in range(N)]  # PLANTED
for item in items[::10]:
    item.extra = 1
print(len(items), sum(hasattr(item, "extra") for item in items))
