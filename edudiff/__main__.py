"""``python -m edudiff {train,sample,evaluate,homework} ...`` -- see :mod:`edudiff.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
