"""The examples of "Optimizing Memory Usage of Python Applications", profiled.

Run it with:  python -m memtrim examples/article.py [SIZE]
(`profile` is put in builtins by memtrim; without memtrim the decorator below
is a no-op, so the script also runs on its own.) SIZE defaults to the
article's 10**7 elements; the benchmarks use smaller ones for slow peers.
"""

import array
import sys

import numpy as np

try:
    profile  # type: ignore[used-before-def]  # noqa: B018
except NameError:  # running without memtrim

    def profile(func):
        return func


@profile
def memory_intensive():
    small_list = [None] * 1000000
    big_list = [None] * 10000000
    del big_list
    return small_list


@profile
def allocate_list(size):
    some_var = [n for n in range(size)]
    return len(some_var)


@profile
def allocate_array(size):
    some_var = array.array("l", range(size))
    return len(some_var)


@profile
def allocate_numpy(size):
    some_var = np.arange(size)
    data = np.ones(size, np.complex128)
    return some_var.nbytes + data.nbytes


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else int(1e7)
    memory_intensive()
    allocate_list(size)
    allocate_array(size)
    allocate_numpy(size)
