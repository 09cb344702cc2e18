"""The fixed twin of intern.py: equal strings are pooled through a dict."""

N = 1_000_000

pool: dict[str, str] = {}
values = [pool.setdefault(s, s) for s in ("-".join(["status", str(i % 50)]) for i in range(N))]
print(len(values), len(set(values)))
