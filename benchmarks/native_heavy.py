"""A native-heavy workload: most of its allocations are C libraries' (Pillow, lxml, numpy).

Used by ``bench_native.py``; runs in about two seconds on plain CPython 3.11 here.
"""

from __future__ import annotations

import io

import numpy as np
from lxml import etree
from PIL import Image, ImageFilter


def trees(rounds: int = 3, nodes: int = 100_000) -> int:
    total = 0
    for _ in range(rounds):
        root = etree.Element("root")
        for i in range(nodes):
            etree.SubElement(root, "child", attr=str(i)).text = "x" * 20
        data = etree.tostring(root)
        total += len(etree.fromstring(data))
    return total


def images(rounds: int = 10) -> int:
    total = 0
    for _ in range(rounds):
        image = Image.new("RGB", (1500, 1500), "red").filter(ImageFilter.GaussianBlur(3))
        out = io.BytesIO()
        image.resize((700, 700)).save(out, "PNG")
        total += out.tell()
    return total


def arrays(rounds: int = 200) -> float:
    total = 0.0
    for i in range(rounds):
        a = np.arange(100_000, dtype=np.float64) * i
        total += float(np.sort(a)[::-1][:10].sum())
    return total


if __name__ == "__main__":
    print(trees(), images(), arrays())
