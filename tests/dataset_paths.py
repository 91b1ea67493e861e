"""Where the tests find the real datasets: $EDUDIFF_DATA, else ../shared/datasets beside the repo."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EDUDIFF_DATA") or REPO.parent / "shared" / "datasets")
HAVE_MNIST = all(
    (DATA / "MNIST" / "raw" / f).is_file()
    for f in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    )
)
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"MNIST not found under {DATA} (set EDUDIFF_DATA)")
