"""Planted waste: a 40 MiB file read whole into a bytes object to be scanned.

The file is written first, 64 KiB at a time (little heap); the fixed twin maps
the file with ``mmap`` instead of reading it, so its pages are the page cache's.
"""

import os
import tempfile

SIZE = 40 * 2**20
CHUNK = (b"x" * 63 + b"\n") * 1024  # 64 KiB

tmp = tempfile.TemporaryDirectory()
path = os.path.join(tmp.name, "data.bin")
with open(path, "wb") as out:
    for _ in range(SIZE // len(CHUNK)):
        out.write(CHUNK)

with open(path, "rb") as f:
    data = f.read()  # PLANTED
print(len(data), data.count(b"x"))
tmp.cleanup()
