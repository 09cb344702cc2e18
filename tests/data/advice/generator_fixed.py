"""The fixed twin of generator.py: a generator expression instead of a list."""

N = 3_000_000

total = sum(x * x for x in range(N))
print(total)
