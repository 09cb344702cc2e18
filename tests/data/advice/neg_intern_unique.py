"""Negative control: 500,000 distinct strings: pooling would share nothing.

No "intern" advice must point at the line that makes them.
"""

N = 500_000

values = [str(i) * 3 for i in range(N)]  # PLANTED
print(len(values), len(set(values)))
