"""Negative control: 300,000 one-key dicts whose keys all differ.

No two dicts share a key set: no "records" advice must point at their line.
"""

N = 300_000

rows = [{f"k{i}": i} for i in range(N)]  # PLANTED
print(len(rows), sum(len(row) for row in rows))
