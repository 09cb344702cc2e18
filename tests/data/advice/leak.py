"""Planted waste: a module-global list gets a new 10 KB buffer per iteration, never cleared.

The fixed twin keeps only the last 10 buffers.
"""

LOG = []


def handle(i):
    buf = bytearray(10_000)  # PLANTED
    buf[0] = i % 256
    LOG.append(buf)
    return len(buf)


total = sum(handle(i) for i in range(3000))
print(len(LOG), total)
