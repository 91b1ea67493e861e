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

Convention: images are float32 tensors of shape (N, C, H, W) with values in [-1, 1]
(:func:`edudiff.data.formats.from_uint8`); labels are int64 tensors of shape (N,) with values 0..9.

Integrity and downloads: :mod:`edudiff.data.downloads` (md5-verified, ``download=True``). The CIFAR-10
subset cannot match the canonical md5 sums (its batches are shorter), so its structure is checked instead.
File formats and :class:`~edudiff.data.formats.ImageDataset`: :mod:`edudiff.data.formats`. This module: the
loaders, the dataset registry :data:`DATASETS` and :func:`make_loader`.

Taught in: notebooks/06_unet_mnist.ipynb (MNIST, FashionMNIST), notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

from .._validate import check_positive_int
from ..config import data_root
from .archives import safe_extractall
from .downloads import (
    MD5,
    DatasetError,
    DatasetNotFoundError,
    download_file,
    md5_ok,
    mirrors,
    missing_message,
    verify_md5,
)
from .formats import ImageDataset, check_idx_pair, from_uint8, read_cifar_batch, read_idx

__all__ = [
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "CIFAR10_ARCHIVE",
    "CIFAR10_DIR",
    "CIFAR10_SUBSET_DIR",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "DatasetInfo",
    "DATASETS",
    "DATASET_NAMES",
    "DATASET_SHAPES",
    "dataset_key",
    "load_dataset",
    "make_loader",
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


_IDX_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


_IDX_FILES = {
    True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"


CIFAR10_DIR = "cifar-10-batches-py"


CIFAR10_SUBSET_DIR = "cifar-10-subset/cifar-10-batches-py"


_CIFAR10_BATCHES = {True: tuple(f"data_batch_{i}" for i in range(1, 6)), False: ("test_batch",)}


def _ensure_idx_files(name: str, root: Path, train: bool, download: bool) -> Path:
    """Return the folder holding the split's two files with canonical md5s, downloading if allowed."""
    filenames = _IDX_FILES[train]
    folder = root / _IDX_FOLDERS[name] / "raw"
    missing = [folder / f for f in filenames if not (folder / f).is_file()]
    if missing and not download:
        title = f"{DATASETS[name].title} ({'train' if train else 'test'} split)"
        example = f"edudiff.data.load_dataset({name!r}, download=True)"
        raise DatasetNotFoundError(missing_message(title, root, missing, example))
    for filename in filenames:
        path, md5 = folder / filename, MD5[name][filename]
        if path.is_file() and not download:
            verify_md5(path, md5)  # DatasetError naming the file if it is corrupted
        elif not (path.is_file() and md5_ok(path, md5)):
            download_file([base + filename for base in mirrors(name)], path, md5)
    return folder


def _load_idx_dataset(name: str, root, train: bool, download: bool, pad_to_32: bool) -> ImageDataset:
    _check_flag("train", train)
    root = data_root(root)
    image_file, label_file = _IDX_FILES[train]
    folder = _ensure_idx_files(name, root, train, download)
    images = read_idx(folder / image_file, expected_ndim=3)
    labels = read_idx(folder / label_file, expected_ndim=1)
    check_idx_pair(images, labels, folder / image_file, folder / label_file)
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


def _extract_cifar10(archive: Path, root: Path) -> None:
    """Extract ``archive`` safely (:func:`edudiff.data.archives.safe_extractall`: an unsafe member refuses the
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
    if not (archive.is_file() and md5_ok(archive, md5)):
        download_file([base + CIFAR10_ARCHIVE for base in mirrors("cifar10")], archive, md5)
    _extract_cifar10(archive, root)


def _locate_cifar10(root: Path, batches: Sequence[str], download: bool) -> Path:
    """The folder to read: ``<root>/cifar-10-batches-py`` (md5-verified), else the subset folder.

    Downloads when neither holds ``batches`` (or the canonical batches are corrupted) and
    ``download`` is true; otherwise raises.
    """
    canonical, subset = root / CIFAR10_DIR, root / CIFAR10_SUBSET_DIR
    if all((canonical / b).is_file() for b in batches):
        if download and not all(md5_ok(canonical / b, MD5["cifar10"][b]) for b in batches):
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
            missing_message(title, root, missing, "edudiff.data.load_dataset('cifar10', download=True)", note)
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
    parts = [read_cifar_batch(folder / b) for b in batches]
    data = np.concatenate([d for d, _ in parts])
    labels = np.concatenate([l for _, l in parts])
    return ImageDataset(from_uint8(data), torch.from_numpy(labels), CIFAR10_CLASSES, source=folder)


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
