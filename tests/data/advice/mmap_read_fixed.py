"""The fixed twin of mmap_read.py: the file is mapped, and scanned 1 MiB at a time.

(``mmap.mmap.count`` only exists from Python 3.13, hence the slices.)
"""

import mmap
import os
import tempfile

SIZE = 40 * 2**20
CHUNK = (b"x" * 63 + b"\n") * 1024  # 64 KiB
STEP = 2**20

tmp = tempfile.TemporaryDirectory()
path = os.path.join(tmp.name, "data.bin")
with open(path, "wb") as out:
    for _ in range(SIZE // len(CHUNK)):
        out.write(CHUNK)

with open(path, "rb") as f:
    data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
print(len(data), sum(data[i : i + STEP].count(b"x") for i in range(0, len(data), STEP)))
data.close()
tmp.cleanup()
