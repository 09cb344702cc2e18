"""``python -m memtrim``: the memtrim command line."""

import sys

from memtrim.commands import main

if __name__ == "__main__":
    sys.exit(main())
