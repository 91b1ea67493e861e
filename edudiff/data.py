"""Image datasets for the course — MNIST, FashionMNIST and CIFAR-10 — read without torchvision.

Layout on disk (torchvision's, so an existing torchvision download is reused as it is)::

    <root>/MNIST/raw/train-images-idx3-ubyte.gz   <root>/MNIST/raw/t10k-images-idx3-ubyte.gz
    <root>/MNIST/raw/train-labels-idx1-ubyte.gz   <root>/MNIST/raw/t10k-labels-idx1-ubyte.gz
    <root>/FashionMNIST/raw/...                   (the same four names)
    <root>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch   (pickled dicts)

``<root>`` is the ``root=`` argument, else ``$EDUDIFF_DATA``, else the repository's ``data/``
(:func:`edudiff.config.data_root`). For CIFAR-10 the loader looks in ``<root>/cifar-10-batches-py``
first and, if that is incomplete, falls back to ``<root>/cifar-10-subset/cifar-10-batches-py``: the
same format with fewer images per batch (the offline test data ships such a real subset, 5,085 train
and 1,017 test images). ``ImageDataset.source`` says which folder was read.

Convention: images are float32 tensors of shape (N, C, H, W) with values in [-1, 1], obtained from
the stored bytes as ``v / 127.5 - 1`` (0 -> -1, 255 -> 1); :func:`to_uint8` inverts it exactly.
Labels are int64 tensors of shape (N,) with values 0..9.

Integrity: the MNIST/FashionMNIST ``.gz`` files and the canonical CIFAR-10 batches are checked
against their published md5 sums (the values torchvision uses), once per process per file version.
The CIFAR-10 subset cannot match those sums (its batches are shorter), so its structure is checked
instead. Batches are unpickled with an unpickler that rebuilds numpy arrays and nothing else.

Download: ``download=True`` fetches missing or corrupted files with urllib from :data:`MIRRORS`,
each URL twice before the next mirror, into a temporary file that replaces the target only after
its md5 matched. ``$EDUDIFF_MIRROR`` puts a mirror of your own first (:func:`mirrors`). Tests point
:data:`MIRRORS` (or ``$EDUDIFF_MIRROR``) at a local server.

Taught in: notebooks/06_unet_mnist.ipynb (MNIST, FashionMNIST), notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import http.client
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info
from tqdm.auto import tqdm

from edudiff._validate import check_positive_int
from edudiff.archives import safe_extractall
from edudiff.config import data_root
from edudiff.utils import atomic_write

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DATASET_NAMES",
    "DATASET_SHAPES",
    "DatasetInfo",
    "dataset_key",
    "DatasetError",
    "DatasetNotFoundError",
    "DownloadError",
    "FASHION_MNIST_CLASSES",
    "ImageDataset",
    "MD5",
    "MIRRORS",
    "MNIST_CLASSES",
    "download_file",
    "from_uint8",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_mnist",
    "make_loader",
    "md5sum",
    "mirrors",
    "read_idx",
    "to_uint8",
    "verify_md5",
]

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

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

_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
_IDX_FILES = {
    True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_SUBSET_DIR = "cifar-10-subset/cifar-10-batches-py"
_CIFAR10_BATCHES = {True: tuple(f"data_batch_{i}" for i in range(1, 6)), False: ("test_batch",)}

DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class DatasetError(ValueError):
    """A dataset file is corrupted or malformed; the message names the file and the fix."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing; the message lists them, where they go, and how to get them."""


class DownloadError(DatasetNotFoundError):
    """``download=True`` could not fetch a file (network error, interrupted transfer, bad md5)."""


# --------------------------------------------------------------------------------------------
# The dataset object and the [-1, 1] <-> uint8 convention
# --------------------------------------------------------------------------------------------
class ImageDataset(Dataset):
    """Images and labels held in memory; ``dataset[i]`` is ``(image (C, H, W), label ())``.

    Attributes:
        images: float32 tensor (N, C, H, W), values in [-1, 1].
        labels: int64 tensor (N,), values 0..len(classes)-1.
        classes: class names, ``classes[label]``.
        source: the folder the files were read from (or None).
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str] = (), source: Path | None = None
    ):
        if images.ndim != 4 or not images.is_floating_point():
            raise ValueError(
                f"images must be a float tensor of shape (N, C, H, W), "
                f"got {images.dtype} of shape {tuple(images.shape)}"
            )
        if labels.shape != (images.shape[0],) or labels.dtype != torch.int64:
            raise ValueError(
                f"labels must be an int64 tensor of shape ({images.shape[0]},), "
                f"got {labels.dtype} of shape {tuple(labels.shape)}"
            )
        self.images = images
        self.labels = labels
        self.classes = tuple(classes)
        self.source = source

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return (
            f"ImageDataset(n={len(self)}, image_shape={tuple(self.images.shape[1:])}, "
            f"classes={len(self.classes)}, source={str(self.source)!r})"
        )


def from_uint8(x) -> torch.Tensor:
    """uint8 pixels (tensor or numpy array, any shape) -> float32 in [-1, 1]: ``v / 127.5 - 1``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.array(x, copy=True))
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        raise TypeError(f"from_uint8: x must hold uint8 pixels (0..255), got {getattr(x, 'dtype', type(x).__name__)}")
    return x.to(torch.float32) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] (any shape) -> uint8: ``round((x + 1) * 127.5)`` clamped to 0..255.

    The exact inverse of :func:`from_uint8`; values outside [-1, 1] (e.g. samples) are clipped.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"to_uint8: x must be a float tensor in [-1, 1], got {getattr(x, 'dtype', type(x).__name__)}")
    if bool(torch.isnan(x).any()):
        raise ValueError("to_uint8: x contains NaN; there is no pixel value for it")
    return ((x.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# md5 checks (cached per process)
# --------------------------------------------------------------------------------------------
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


def _md5_ok(path: Path, expected: str) -> bool:
    try:
        verify_md5(path, expected)
        return True
    except DatasetError:
        return False


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------
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


def _missing_message(title: str, root: Path, missing: Sequence[Path], example: str, note: str = "") -> str:
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


# --------------------------------------------------------------------------------------------
# MNIST and FashionMNIST (IDX files)
# --------------------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if it is gzip-compressed."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(
            f"{path} is not a valid gzip file ({err}); delete it and re-run with "
            f"download=True, or copy a good copy there"
        ) from err


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; gzipped or not) into a uint8 array.

    Format: a 4-byte magic number — two zero bytes, the type code 0x08 (unsigned byte) and the
    number of dimensions d — then d big-endian int32 sizes, then prod(sizes) bytes, row-major.
    Image files have d = 3, shape (N, 28, 28), magic 2051; label files d = 1, shape (N,), magic 2049.
    Raises :class:`DatasetError` (a ValueError) naming the file if anything does not fit.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DatasetError(
            f"{path} is not an IDX file of unsigned bytes: its magic number is "
            f"0x{raw[:4].hex()}, expected 0x000008NN (2049 for labels, 2051 for images)"
        )
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetError(
            f"{path} has {ndim} dimensions (magic {int.from_bytes(raw[:4], 'big')}), "
            f"expected {expected_ndim}; is it the right file?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: it ends inside its header")
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = math.prod(shape)
    if len(raw) - header != size:
        raise DatasetError(
            f"{path}: the header announces shape {shape} ({size} bytes) but the "
            f"file holds {len(raw) - header} data bytes; it is truncated or malformed"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def _ensure_idx_files(name: str, root: Path, train: bool, download: bool) -> Path:
    """Return the folder holding the split's two files with canonical md5s, downloading if allowed."""
    filenames = _IDX_FILES[train]
    folder = root / _IDX_FOLDERS[name] / "raw"
    missing = [folder / f for f in filenames if not (folder / f).is_file()]
    if missing and not download:
        title = f"{DATASETS[name].title} ({'train' if train else 'test'} split)"
        example = f"edudiff.data.load_dataset({name!r}, download=True)"
        raise DatasetNotFoundError(_missing_message(title, root, missing, example))
    for filename in filenames:
        path, md5 = folder / filename, MD5[name][filename]
        if path.is_file() and not download:
            verify_md5(path, md5)  # DatasetError naming the file if it is corrupted
        elif not (path.is_file() and _md5_ok(path, md5)):
            download_file([base + filename for base in mirrors(name)], path, md5)
    return folder


def _check_idx_pair(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{image_path} holds images of size {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{image_path} has {images.shape[0]} images but {label_path} has "
            f"{labels.shape[0]} labels; the pair does not match"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{label_path} has label {labels.max()}, expected 0..9")


def _load_idx_dataset(name: str, root, train: bool, download: bool, pad_to_32: bool) -> ImageDataset:
    _check_flag("train", train)
    root = data_root(root)
    image_file, label_file = _IDX_FILES[train]
    folder = _ensure_idx_files(name, root, train, download)
    images = read_idx(folder / image_file, expected_ndim=3)
    labels = read_idx(folder / label_file, expected_ndim=1)
    _check_idx_pair(images, labels, folder / image_file, folder / label_file)
    x = from_uint8(images).unsqueeze(1)  # (N, 1, 28, 28)
    if pad_to_32:
        x = F.pad(x, (2, 2, 2, 2), value=-1.0)  # black border -> (N, 1, 32, 32)
    classes = MNIST_CLASSES if name == "mnist" else FASHION_MNIST_CLASSES
    return ImageDataset(x, torch.from_numpy(labels.astype(np.int64)), classes, source=folder)


def load_mnist(root=None, train: bool = True, download: bool = False, pad_to_32: bool = False) -> ImageDataset:
    """MNIST handwritten digits from ``<root>/MNIST/raw/*.gz``, md5-verified.

    Returns an :class:`ImageDataset`: images float32 (N, 1, 28, 28) in [-1, 1] (uint8 v -> v/127.5 - 1),
    N = 60000 (train) or 10000 (test); with ``pad_to_32`` a 2-pixel border of -1 gives (N, 1, 32, 32),
    a size that halves cleanly through a U-Net. Labels int64 (N,) in 0..9.

    Taught in: notebooks/06_unet_mnist.ipynb
    """
    return _load_idx_dataset("mnist", root, train, download, pad_to_32)


def load_fashion_mnist(root=None, train: bool = True, download: bool = False, pad_to_32: bool = False) -> ImageDataset:
    """FashionMNIST (Zalando clothing) from ``<root>/FashionMNIST/raw/*.gz``; as :func:`load_mnist`.

    Labels index :data:`FASHION_MNIST_CLASSES` (0 = T-shirt/top ... 9 = Ankle boot).

    Taught in: notebooks/06_unet_mnist.ipynb
    """
    return _load_idx_dataset("fashion_mnist", root, train, download, pad_to_32)


# --------------------------------------------------------------------------------------------
# CIFAR-10 (pickled batches)
# --------------------------------------------------------------------------------------------
_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy's array-rebuilding function


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, strings and numpy arrays and refuses every other global.

    A CIFAR batch needs nothing more, and a tampered file then cannot run code when loaded.
    """

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _RECONSTRUCT
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 pickles bytes at protocol 2
            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load the global {module}.{name}")


def _unpickle_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except Exception as err:  # a broken pickle can raise almost anything
        raise DatasetError(
            f"{path} is not a readable CIFAR-10 batch ({type(err).__name__}: {err}); "
            f"delete it and re-run with download=True, or copy a good copy there"
        ) from err
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} should hold a dict, it holds a {type(batch).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (data uint8 (n, 3, 32, 32), labels int64 (n,)), structure checked.

    Each row of ``data`` is 3072 bytes: the 32x32 red plane, then green, then blue, row-major.
    """
    batch = _unpickle_batch(path)
    missing = {"data", "labels"} - batch.keys()
    if missing:
        raise DatasetError(f"{path} lacks the key(s) {sorted(missing)}; keys found: {sorted(batch)}")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"{path}: 'data' must be a uint8 array of shape (n, 3072), got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: 'labels' must be {data.shape[0]} integers, got {labels.dtype} of shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _extract_cifar10(archive: Path, root: Path) -> None:
    """Extract ``archive`` safely (:func:`edudiff.archives.safe_extractall`: an unsafe member refuses the
    whole archive) into a temporary folder in ``root``, then move the regular files directly under
    ``cifar-10-batches-py/`` into place one by one."""
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-10-extract-"))
    try:
        safe_extractall(archive, tmp, "r:gz")
        target = root / CIFAR10_DIR
        target.mkdir(exist_ok=True)
        source = tmp / CIFAR10_DIR
        for path in source.iterdir() if source.is_dir() else ():
            if path.is_file() and not path.is_symlink():
                os.replace(path, target / path.name)
    except (tarfile.TarError, EOFError, zlib.error) as err:
        raise DatasetError(
            f"{archive} could not be extracted ({err}); delete it and re-run with download=True"
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download_cifar10(root: Path) -> None:
    """Fetch (unless already there and intact) and extract ``cifar-10-python.tar.gz`` into ``root``."""
    archive, md5 = root / CIFAR10_ARCHIVE, MD5["cifar10"][CIFAR10_ARCHIVE]
    if not (archive.is_file() and _md5_ok(archive, md5)):
        download_file([base + CIFAR10_ARCHIVE for base in mirrors("cifar10")], archive, md5)
    _extract_cifar10(archive, root)


def _locate_cifar10(root: Path, batches: Sequence[str], download: bool) -> Path:
    """The folder to read: ``<root>/cifar-10-batches-py`` (md5-verified), else the subset folder.

    Downloads when neither holds ``batches`` (or the canonical batches are corrupted) and
    ``download`` is true; otherwise raises.
    """
    canonical, subset = root / CIFAR10_DIR, root / CIFAR10_SUBSET_DIR
    if all((canonical / b).is_file() for b in batches):
        if download and not all(_md5_ok(canonical / b, MD5["cifar10"][b]) for b in batches):
            _download_cifar10(root)
        for b in batches:
            verify_md5(canonical / b, MD5["cifar10"][b])
        return canonical
    if all((subset / b).is_file() for b in batches):
        return subset
    if not download:
        missing = [canonical / b for b in batches if not (canonical / b).is_file()]
        title = f"CIFAR-10 ({'train' if batches == _CIFAR10_BATCHES[True] else 'test'} split)"
        note = f"(A subset in the same format is also accepted at {subset}.)\n"
        raise DatasetNotFoundError(
            _missing_message(title, root, missing, "edudiff.data.load_dataset('cifar10', download=True)", note)
        )
    _download_cifar10(root)
    for b in batches:
        verify_md5(canonical / b, MD5["cifar10"][b])
    return canonical


def load_cifar10(root=None, train: bool = True, download: bool = False) -> ImageDataset:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (or ``<root>/cifar-10-subset/cifar-10-batches-py``).

    Returns an :class:`ImageDataset`: images float32 (N, 3, 32, 32) in [-1, 1], channels R, G, B;
    N = 50000 (train: data_batch_1..5) or 10000 (test_batch) for the full set. Labels int64 (N,),
    indices into :data:`CIFAR10_CLASSES`. ``download=True`` fetches ``cifar-10-python.tar.gz``
    (md5 c58f30108f718f92721af3b95e74349a) and extracts it into ``<root>``.

    Taught in: notebooks/07_cifar10.ipynb
    """
    _check_flag("train", train)
    root = data_root(root)
    batches = _CIFAR10_BATCHES[train]
    folder = _locate_cifar10(root, batches, download)
    parts = [_read_cifar_batch(folder / b) for b in batches]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([l for _, l in parts])
    return ImageDataset(from_uint8(data), torch.from_numpy(labels), CIFAR10_CLASSES, source=folder)


# --------------------------------------------------------------------------------------------
# One entry point, and the DataLoader
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    """One row of :data:`DATASETS`: the canonical name, the title used in messages, the image shape
    (C, H, W), the class names, the loader, and other spellings accepted for the name."""

    name: str
    title: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    loader: Callable[..., ImageDataset]
    aliases: tuple[str, ...] = ()


#: The dataset registry: every name, alias, shape and class list, in one table.
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", (1, 28, 28), MNIST_CLASSES, load_mnist),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        "FashionMNIST",
        (1, 28, 28),
        FASHION_MNIST_CLASSES,
        load_fashion_mnist,
        aliases=("fashionmnist",),
    ),
    "cifar10": DatasetInfo("cifar10", "CIFAR-10", (3, 32, 32), CIFAR10_CLASSES, load_cifar10, aliases=("cifar_10",)),
}
DATASET_NAMES = tuple(DATASETS)
#: (channels, height, width) of each dataset's images.
DATASET_SHAPES = {name: info.shape for name, info in DATASETS.items()}


def dataset_key(name: str, argument: str = "name") -> str:
    """The canonical name of a dataset ("mnist", "fashion_mnist", "cifar10"): case, "-" vs "_" and the
    aliases of :data:`DATASETS` are forgiven. A ValueError naming ``argument`` for anything else."""
    key = str(name).strip().lower().replace("-", "_")
    for info in DATASETS.values():
        if key == info.name or key in info.aliases:
            return info.name
    raise ValueError(f"{argument} must be one of {', '.join(DATASET_NAMES)}; got {name!r}")


def load_dataset(name: str, root=None, train: bool = True, download: bool = False, **kwargs) -> ImageDataset:
    """Load a dataset by name: "mnist", "fashion_mnist" or "cifar10" (for the CLI).

    ``kwargs`` go to the loader (e.g. ``pad_to_32=True`` for the MNISTs).
    """
    return DATASETS[dataset_key(name)].loader(root=root, train=train, download=download, **kwargs)


class _RandomHFlip:
    """collate_fn: stack the batch, then flip each image left-right with probability 1/2.

    In the main process the flips come from a generator seeded by the loader's seed; in a
    worker from the worker's torch RNG, which the DataLoader seeds from that same seed.
    """

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch):
        images, labels = default_collate(batch)
        generator = self.generator if get_worker_info() is None else None
        flip = torch.rand(images.shape[0], generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        return images, labels


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    hflip: bool = False,
    drop_last: bool = False,
    num_workers: int = 0,
    **loader_kwargs,
) -> DataLoader:
    """A DataLoader whose order (and flips) depend only on ``seed``; yields
    ``(images (B, C, H, W), labels (B,))``.

    ``hflip=True`` flips each image left-right with probability 1/2 — the only augmentation
    DDPM uses, on CIFAR-10 (Ho et al. 2020, Appendix B). Do not use it on digits.

    Taught in: notebooks/06_unet_mnist.ipynb, notebooks/07_cifar10.ipynb
    """
    check_positive_int(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(seed)
    collate_fn = None
    if hflip:
        flip_seed = int(torch.randint(2**62, (1,), generator=generator))
        collate_fn = _RandomHFlip(flip_seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        generator=generator,
        collate_fn=collate_fn,
        **loader_kwargs,
    )


def _check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
