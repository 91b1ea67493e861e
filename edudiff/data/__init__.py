"""The data layer: image datasets read from their canonical files, without torchvision.

* :mod:`~edudiff.data.datasets`: the loaders (:func:`load_mnist`, :func:`load_fashion_mnist`, :func:`load_cifar10`),
  the registry :data:`DATASETS` (names, aliases, shapes, classes), :func:`load_dataset` and :func:`make_loader`.
* :mod:`~edudiff.data.formats`: the file formats (IDX, CIFAR-10 pickles), :class:`ImageDataset`, and the
  [-1, 1] <-> uint8 convention (:func:`from_uint8`, :func:`to_uint8`).
* :mod:`~edudiff.data.downloads`: md5-verified downloads from :data:`MIRRORS`, and the errors.
* :mod:`~edudiff.data.archives`: safe extraction of the CIFAR-10 tarball.

Stands on the foundation (:mod:`edudiff.config`, :mod:`edudiff.utils`) alone.
"""

from .datasets import (
    CIFAR10_CLASSES,
    DATASET_NAMES,
    DATASET_SHAPES,
    DATASETS,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    DatasetInfo,
    dataset_key,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    make_loader,
)
from .downloads import (
    MD5,
    MIRRORS,
    DatasetError,
    DatasetNotFoundError,
    DownloadError,
    download_file,
    md5sum,
    mirrors,
    verify_md5,
)
from .formats import ImageDataset, from_uint8, read_idx, to_uint8

__all__ = [
    "CIFAR10_CLASSES", "DATASET_NAMES", "DATASET_SHAPES", "DATASETS", "FASHION_MNIST_CLASSES", "MNIST_CLASSES",
    "DatasetInfo", "dataset_key", "load_cifar10", "load_dataset", "load_fashion_mnist", "load_mnist", "make_loader",
    "MD5", "MIRRORS", "DatasetError", "DatasetNotFoundError", "DownloadError", "download_file", "md5sum", "mirrors",
    "verify_md5", "ImageDataset", "from_uint8", "read_idx", "to_uint8",
]  # fmt: skip
