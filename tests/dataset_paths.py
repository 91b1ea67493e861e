"""Where the tests find the real datasets: $EDUDIFF_DATA, else ../shared/datasets beside the repo."""

import io
import os
import tarfile
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

CIFAR_SUBSET = DATA / "cifar-10-subset" / "cifar-10-batches-py"
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def cifar_subset_tarball(evil: bool = False) -> bytes:
    """A tar.gz in the canonical ``cifar-10-python.tar.gz`` layout built from the real subset (plus a README
    that the loader does not move into place); ``evil=True`` adds a member that escapes the destination,
    which must refuse the archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        tar.add(CIFAR_SUBSET, arcname="cifar-10-batches-py", recursive=False)
        for name in CIFAR_FILES:
            tar.add(CIFAR_SUBSET / name, arcname=f"cifar-10-batches-py/{name}")
        readme = tarfile.TarInfo("cifar-10-batches-py/readme/notes.txt")
        readme.size = 2
        tar.addfile(readme, io.BytesIO(b"hi"))
        if evil:
            member = tarfile.TarInfo("../escaped.txt")
            member.size = 3
            tar.addfile(member, io.BytesIO(b"bad"))
    return buffer.getvalue()
