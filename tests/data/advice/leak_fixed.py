"""The fixed twin of leak.py: the list keeps only the last 10 buffers."""

LOG = []


def handle(i):
    buf = bytearray(10_000)
    buf[0] = i % 256
    LOG.append(buf)
    del LOG[:-10]
    return len(buf)


total = sum(handle(i) for i in range(3000))
print(len(LOG), total)
