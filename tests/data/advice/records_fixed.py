"""The fixed twin of records.py: the rows are tuples (id, x, y)."""

N = 300_000

rows = [(i, i % 100, i % 7) for i in range(N)]
print(len(rows), sum(row[1] + row[2] for row in rows))
