"""Getting the canonical dataset files: the mirrors, their md5 sums, verified downloads, and the errors.

Integrity: the MNIST/FashionMNIST ``.gz`` files and the canonical CIFAR-10 batches are checked against their
published md5 sums (the values torchvision uses), once per process per file version (:func:`verify_md5`).

Download: ``download=True`` fetches missing or corrupted files with urllib from :data:`MIRRORS`, each URL twice
before the next mirror, into a temporary file that replaces the target only after its md5 matched
(:func:`download_file`). ``$EDUDIFF_MIRROR`` puts a mirror of your own first (:func:`mirrors`). Tests point
:data:`MIRRORS` (or ``$EDUDIFF_MIRROR``) at a local server.

Taught in: notebooks/06_unet_mnist.ipynb (MNIST, FashionMNIST), notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ..utils import atomic_write

__all__ = [
    "MIRRORS",
    "mirrors",
    "MD5",
    "DOWNLOAD_TIMEOUT_S",
    "DatasetError",
    "DatasetNotFoundError",
    "DownloadError",
    "md5sum",
    "verify_md5",
    "md5_ok",
    "download_file",
    "missing_message",
]


#: Base URLs that ``download=True`` tries in order (file name appended), after ``$EDUDIFF_MIRROR``
#: (see :func:`mirrors`). Tests override them.
MIRRORS: dict[str, list[str]] = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
    "fashion_mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}


def mirrors(name: str) -> list[str]:
    """The base URLs ``download=True`` tries for dataset ``name``, in order: ``$EDUDIFF_MIRROR/<name>/``
    first when that variable is set (a classroom or lab mirror holding the canonical files as
    ``<mirror>/mnist/train-images-idx3-ubyte.gz``, ``<mirror>/cifar10/cifar-10-python.tar.gz``, ...; md5s
    are checked all the same), then :data:`MIRRORS`."""
    local = os.environ.get("EDUDIFF_MIRROR", "").strip()
    return ([f"{local.rstrip('/')}/{name}/"] if local else []) + list(MIRRORS[name])


#: Canonical md5 of every file, per dataset (the same values as torchvision's tables).
MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
}


DOWNLOAD_TIMEOUT_S = 60.0


_CHUNK = 1 << 20


class DatasetError(ValueError):
    """A dataset file is corrupted or malformed; the message names the file and the fix."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing; the message lists them, where they go, and how to get them."""


class DownloadError(DatasetNotFoundError):
    """``download=True`` could not fetch a file (network error, interrupted transfer, bad md5)."""


_VERIFIED: set[tuple] = set()  # (path, inode, size, mtime_ns, md5) of files already checked


def md5sum(path: str | os.PathLike) -> str:
    """The md5 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_key(path: Path, md5: str) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, md5)


def verify_md5(path: str | os.PathLike, expected: str, fix: str = "") -> None:
    """Raise :class:`DatasetError` unless the file's md5 is ``expected``.

    A file is hashed once per process per version (path, inode, size, mtime): repeated loads
    are cheap, and a replaced or rewritten file is hashed again.
    """
    path = Path(path)
    key = _cache_key(path, expected)
    if key in _VERIFIED:
        return
    found = md5sum(path)
    if found != expected:
        fix = fix or ("re-run with download=True, which replaces it, or delete it and copy a good copy there")
        raise DatasetError(f"{path} is corrupted: expected md5 {expected}, found {found}. Fix: {fix}.")
    _VERIFIED.add(key)


def md5_ok(path: Path, expected: str) -> bool:
    try:
        verify_md5(path, expected)
        return True
    except DatasetError:
        return False


class _TransferError(OSError):
    """The server closed the connection before sending the announced number of bytes."""


def _fetch_once(url: str, out, expected_md5: str) -> None:
    """One attempt: stream ``url`` into the binary file ``out``, then check its length and md5."""
    digest, received = hashlib.md5(), 0
    request = urllib.request.Request(url, headers={"User-Agent": "edudiff (python urllib)"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=PurePosixPath(url).name, leave=False
        ) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise _TransferError(f"transfer interrupted after {received} of {total} bytes")
    found = digest.hexdigest()
    if found != expected_md5:
        raise DatasetError(f"md5 mismatch: expected {expected_md5}, found {found}")


def download_file(urls: Sequence[str], dest: str | os.PathLike, md5: str, tries_per_url: int = 2) -> Path:
    """Download the first URL of ``urls`` that works to ``dest``, verified against ``md5``.

    Each URL is tried ``tries_per_url`` times (one retry by default), then the next mirror. Bytes go
    to a hidden temporary file next to ``dest`` that is renamed onto it only once the md5 matched
    (:func:`edudiff.utils.atomic_write`), so a failed or interrupted transfer never leaves a partial
    file. Raises :class:`DownloadError` listing every attempt.
    """
    dest, failures = Path(dest), []
    for url in urls:
        for _ in range(tries_per_url):
            try:
                atomic_write(dest, lambda out, url=url: _fetch_once(url, out, md5))
            except (OSError, http.client.HTTPException, DatasetError) as err:
                failures.append(f"{url}: {type(err).__name__}: {err}")
                continue
            _VERIFIED.add(_cache_key(dest, md5))
            return dest
    attempts = "\n".join(f"  attempt {i}: {failure}" for i, failure in enumerate(failures, 1))
    raise DownloadError(
        f"Could not download {dest.name} (expected md5 {md5}) to {dest}:\n{attempts}\n"
        f"Fix: check the connection and re-run with download=True; or fetch the file "
        f"yourself and put it at {dest}; or point the data root at a folder that has it "
        f"(EDUDIFF_DATA=/path/to/root, or root='/path/to/root')."
    )


def missing_message(title: str, root: Path, missing: Sequence[Path], example: str, note: str = "") -> str:
    """The text of a DatasetNotFoundError: what is missing, where it goes, and three fixes."""
    files = "\n".join(f"  {path}" for path in missing)
    return (
        f"{title} not found. Missing files:\n{files}\n{note}"
        f"Data root: {root} (the root= argument, else $EDUDIFF_DATA, else the repository's data/).\n"
        f"Fix, one of:\n"
        f"  - download them (needs internet): pass download=True, e.g. {example};\n"
        f"  - copy the files to the paths above;\n"
        f"  - point to a folder that already holds them: set EDUDIFF_DATA=/path/to/root, "
        f"or pass root='/path/to/root'."
    )
