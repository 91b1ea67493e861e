"""The datasets' file formats and the in-memory dataset: IDX files (MNIST, FashionMNIST), CIFAR-10's pickled
batches, :class:`ImageDataset`, and the [-1, 1] <-> uint8 convention.

Convention: images are float32 tensors of shape (N, C, H, W) with values in [-1, 1], obtained from the stored
bytes as ``v / 127.5 - 1`` (0 -> -1, 255 -> 1); :func:`to_uint8` inverts it exactly. Labels are int64 tensors of
shape (N,). CIFAR-10 batches are unpickled with an unpickler that rebuilds numpy arrays and nothing else.

Taught in: notebooks/06_unet_mnist.ipynb (MNIST, FashionMNIST), notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import codecs
import gzip
import math
import os
import pickle
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .downloads import DatasetError

__all__ = [
    "ImageDataset",
    "from_uint8",
    "to_uint8",
    "read_idx",
    "check_idx_pair",
    "unpickle_batch",
    "read_cifar_batch",
]


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


def check_idx_pair(images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{image_path} holds images of size {images.shape[1:]}, expected (28, 28)")
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{image_path} has {images.shape[0]} images but {label_path} has "
            f"{labels.shape[0]} labels; the pair does not match"
        )
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{label_path} has label {labels.max()}, expected 0..9")


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


def unpickle_batch(path: Path) -> dict:
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


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (data uint8 (n, 3, 32, 32), labels int64 (n,)), structure checked.

    Each row of ``data`` is 3072 bytes: the 32x32 red plane, then green, then blue, row-major.
    """
    batch = unpickle_batch(path)
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
