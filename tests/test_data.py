"""Tests for edudiff.data.

Real files come from the offline dataset folder (``<repo>/../shared/datasets``, or ``$EDUDIFF_DATA``)
and are checked against an independent numpy decoding of the same bytes. Downloads run for real,
with urllib, against a local HTTP server on 127.0.0.1 whose misbehaviour each test chooses.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_paths import DATA, REPO, cifar_subset_tarball  # noqa: E402,F401

from edudiff import data
from edudiff.data import DatasetError, DatasetNotFoundError, DownloadError, archives, downloads

MNIST_RAW = DATA / "MNIST" / "raw"
FASHION_RAW = DATA / "FashionMNIST" / "raw"
SUBSET = DATA / "cifar-10-subset" / "cifar-10-batches-py"
CIFAR_DIR = SUBSET if not (DATA / "cifar-10-batches-py" / "test_batch").exists() else DATA / "cifar-10-batches-py"

MNIST_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]

# Published class counts of MNIST (LeCun et al.), also re-derived below from the raw label bytes.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _need(*paths: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(
            f"offline dataset files not found: {missing} (set EDUDIFF_DATA or provide "
            f"{REPO.parent / 'shared' / 'datasets'})"
        )


def _raw_idx(path: Path, header: int) -> np.ndarray:
    """Independent IDX reading: gunzip and skip the fixed-size header."""
    return np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8, offset=header)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _decode_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Independent CIFAR decoding with the standard pickle module: (rows (n, 3072), labels (n,))."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    return batch["data"], np.array(batch["labels"])


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


# --------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_train():
    _need(*(MNIST_RAW / f for f in data.MD5["mnist"]))
    return data.load_mnist(DATA, train=True)


@pytest.fixture(scope="module")
def mnist_test():
    _need(*(MNIST_RAW / f for f in data.MD5["mnist"]))
    return data.load_mnist(DATA, train=False)


def test_mnist_train_shapes_range_and_class_counts(mnist_train):
    ds = mnist_train
    assert len(ds) == 60000 and ds.images.shape == (60000, 1, 28, 28)
    assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
    assert ds.images.min().item() == -1.0 and ds.images.max().item() == 1.0
    raw_labels = _raw_idx(MNIST_RAW / "train-labels-idx1-ubyte.gz", header=8)
    assert np.bincount(raw_labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(ds.labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.array_equal(ds.labels.numpy(), raw_labels)
    assert ds.classes == tuple("0123456789")


def test_mnist_pixels_are_the_raw_bytes(mnist_train):
    raw = _raw_idx(MNIST_RAW / "train-images-idx3-ubyte.gz", header=16).reshape(60000, 28, 28)
    assert np.array_equal(data.to_uint8(mnist_train.images)[:, 0].numpy(), raw)
    # v / 127.5 - 1, checked at three values of one pixel class each
    x, v = mnist_train.images[:, 0].numpy(), raw
    for level in (0, 128, 255):
        assert np.allclose(x[v == level], level / 127.5 - 1, atol=1e-6)


def test_mnist_test_split(mnist_test):
    assert mnist_test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(mnist_test.labels).tolist() == MNIST_TEST_COUNTS


def test_pad_to_32_adds_a_black_border(mnist_test):
    padded = data.load_mnist(DATA, train=False, pad_to_32=True)
    assert padded.images.shape == (10000, 1, 32, 32)
    assert torch.equal(padded.images[:, :, 2:30, 2:30], mnist_test.images)
    border = padded.images.clone()
    border[:, :, 2:30, 2:30] = -1.0
    assert bool((border == -1.0).all())


def test_fashion_mnist_loads():
    _need(*(FASHION_RAW / f for f in data.MD5["fashion_mnist"]))
    train = data.load_fashion_mnist(DATA, train=True)
    test = data.load_dataset("fashion_mnist", DATA, train=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10  # FashionMNIST is balanced
    assert train.images.min().item() == -1.0 and train.images.max().item() == 1.0
    assert train.classes[9] == "Ankle boot"
    raw = _raw_idx(FASHION_RAW / "t10k-images-idx3-ubyte.gz", header=16).reshape(10000, 28, 28)
    assert np.array_equal(data.to_uint8(test.images)[:, 0].numpy(), raw)


def test_cifar10_loads_with_rgb_planes_in_order():
    _need(*(CIFAR_DIR / b for b in CIFAR_BATCHES))
    train = data.load_cifar10(DATA, train=True)
    test = data.load_dataset("cifar10", DATA, train=False)
    expected = (5085, 1017) if CIFAR_DIR == SUBSET else (50000, 10000)
    assert (len(train), len(test)) == expected
    assert train.source == CIFAR_DIR
    assert train.images.shape == (expected[0], 3, 32, 32) and train.images.dtype == torch.float32
    assert train.images.min().item() == -1.0 and train.images.max().item() == 1.0
    assert set(train.labels.tolist()) == set(range(10))
    # Independent decoding with the standard pickle module: row = R plane, G plane, B plane.
    rows, labels = _decode_cifar_batch(CIFAR_DIR / "test_batch")
    pixels = data.to_uint8(test.images).numpy()
    i, y, x = 7, 3, 21
    assert pixels[i, 0, y, x] == rows[i, 0 * 1024 + 32 * y + x]  # red
    assert pixels[i, 1, y, x] == rows[i, 1 * 1024 + 32 * y + x]  # green
    assert pixels[i, 2, y, x] == rows[i, 2 * 1024 + 32 * y + x]  # blue
    assert np.array_equal(pixels.reshape(len(test), -1), rows)
    assert np.array_equal(test.labels.numpy(), labels)
    # Typical natural-image statistics over the set: more red than blue.
    assert test.images[:, 0].mean() > test.images[:, 2].mean()


# --------------------------------------------------------------------------------------------
# CIFAR-10 location, md5 and structure checks
# --------------------------------------------------------------------------------------------
def _link_subset(folder: Path, batches=CIFAR_BATCHES) -> None:
    folder.mkdir(parents=True)
    for b in batches:
        (folder / b).symlink_to(SUBSET / b)


def test_cifar10_canonical_folder_is_md5_checked_and_preferred(tmp_path, monkeypatch):
    _need(*(SUBSET / b for b in CIFAR_BATCHES))
    _link_subset(tmp_path / "cifar-10-batches-py", ["test_batch"])
    _link_subset(tmp_path / "cifar-10-subset" / "cifar-10-batches-py", ["test_batch"])
    # The subset's batches are not the canonical ones: in the canonical place that is an error.
    with pytest.raises(DatasetError) as err:
        data.load_cifar10(tmp_path, train=False)
    assert "test_batch" in str(err.value) and data.MD5["cifar10"]["test_batch"] in str(err.value)
    # With their md5 declared canonical, the canonical folder wins over the subset.
    monkeypatch.setitem(data.MD5["cifar10"], "test_batch", _md5(SUBSET / "test_batch"))
    assert data.load_cifar10(tmp_path, train=False).source == tmp_path / "cifar-10-batches-py"


def _write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not a pickle", "not a readable CIFAR-10 batch"),
        ({"labels": [0]}, "lacks the key"),
        ({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, "uint8 array of shape (n, 3072)"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "'labels' must be 2 integers"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "labels must lie in 0..9"),
        ({"data": np.zeros((1, 3072), np.uint8), "labels": [0], "evil": os.getcwd}, "refusing to load"),
    ],
)
def test_cifar10_bad_batch_raises_naming_the_file(tmp_path, content, message):
    batch = tmp_path / "cifar-10-subset" / "cifar-10-batches-py" / "test_batch"
    if isinstance(content, bytes):
        batch.parent.mkdir(parents=True)
        batch.write_bytes(content)
    else:
        _write_pickle(batch, content)
    with pytest.raises(DatasetError) as err:
        data.load_cifar10(tmp_path, train=False)
    assert str(batch) in str(err.value) and message in str(err.value)


def test_cifar10_tiny_batch_with_bytes_keys_loads(tmp_path):
    rows = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    _write_pickle(
        tmp_path / "cifar-10-subset" / "cifar-10-batches-py" / "test_batch", {b"data": rows, b"labels": [3, 9]}
    )
    ds = data.load_cifar10(tmp_path, train=False)
    assert ds.labels.tolist() == [3, 9]
    assert data.to_uint8(ds.images)[1, 2, 0, 5].item() == rows[1, 2048 + 5]


# --------------------------------------------------------------------------------------------
# Offline errors: missing, corrupted, malformed files
# --------------------------------------------------------------------------------------------
def test_missing_files_error_says_what_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        data.load_mnist(tmp_path, train=False)
    assert isinstance(err.value, FileNotFoundError)
    message = str(err.value)
    for name in MNIST_TEST_FILES:
        assert str(tmp_path / "MNIST" / "raw" / name) in message
    assert str(tmp_path) in message and "EDUDIFF_DATA" in message and "download=True" in message
    assert not (tmp_path / "MNIST").exists()  # nothing created while only looking

    with pytest.raises(FileNotFoundError) as err:
        data.load_cifar10(tmp_path, train=True)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_5") in message
    assert "cifar-10-subset" in message and "EDUDIFF_DATA" in message and "download=True" in message


def test_data_root_comes_from_edudiff_data(tmp_path, monkeypatch):
    monkeypatch.setenv("EDUDIFF_DATA", str(tmp_path / "from-env"))
    with pytest.raises(FileNotFoundError, match="from-env"):
        data.load_fashion_mnist()
    _need(*(MNIST_RAW / f for f in MNIST_TEST_FILES))
    monkeypatch.setenv("EDUDIFF_DATA", str(DATA))
    assert len(data.load_mnist(train=False)) == 10000


def _copy_mnist_test(root: Path) -> Path:
    _need(*(MNIST_RAW / f for f in MNIST_TEST_FILES))
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_TEST_FILES:
        shutil.copyfile(MNIST_RAW / name, raw / name)
    return raw


def _flip_bytes(path: Path, at: int = 100, n: int = 4) -> None:
    blob = bytearray(path.read_bytes())
    blob[at : at + n] = bytes(b ^ 0xFF for b in blob[at : at + n])
    path.write_bytes(bytes(blob))


def test_corrupted_local_file_names_file_and_md5(tmp_path):
    raw = _copy_mnist_test(tmp_path)
    bad = raw / "t10k-labels-idx1-ubyte.gz"
    _flip_bytes(bad)
    with pytest.raises(ValueError) as err:
        data.load_mnist(tmp_path, train=False)
    message = str(err.value)
    assert isinstance(err.value, DatasetError)
    assert str(bad) in message and data.MD5["mnist"][bad.name] in message
    assert _md5(bad) in message and "download=True" in message


def test_md5_is_checked_once_per_file_version(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    calls = Counter()
    real_md5sum = data.md5sum
    monkeypatch.setattr(downloads, "md5sum", lambda p: calls.update([str(p)]) or real_md5sum(p))
    good = hashlib.md5(b"abc").hexdigest()
    data.verify_md5(path, good)
    data.verify_md5(path, good)
    assert calls[str(path)] == 1
    path.write_bytes(b"abd")
    os.utime(path, ns=(0, 10**9))  # a new version (mtime changes even on coarse clocks)
    with pytest.raises(DatasetError):
        data.verify_md5(path, good)
    assert calls[str(path)] == 2


def _idx_bytes(magic: bytes, dims: tuple[int, ...], payload: bytes) -> bytes:
    return magic + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@pytest.mark.parametrize(
    "blob, message",
    [
        (_idx_bytes(b"\x00\x00\x09\x01", (3,), b"abc"), "magic number is 0x00000901"),
        (_idx_bytes(b"\x08\x03\x00\x00", (3,), b"abc"), "magic number"),
        (_idx_bytes(b"\x00\x00\x08\x03", (2, 2, 2), b"1234567"), "holds 7 data bytes"),
        (_idx_bytes(b"\x00\x00\x08\x01", (3,), b"abc"), "has 1 dimensions"),
        (b"\x00\x00\x08\x03\x00", "truncated"),
    ],
)
def test_malformed_idx_raises_value_error_naming_file(tmp_path, blob, message):
    path = tmp_path / "images.idx.gz"
    path.write_bytes(gzip.compress(blob))
    with pytest.raises(ValueError) as err:
        data.read_idx(path, expected_ndim=3)
    assert str(path) in str(err.value) and message in str(err.value)


def test_read_idx_reads_plain_and_gzipped(tmp_path):
    blob = _idx_bytes(b"\x00\x00\x08\x02", (2, 3), bytes(range(6)))
    (tmp_path / "a").write_bytes(blob)
    (tmp_path / "a.gz").write_bytes(gzip.compress(blob))
    for name in ("a", "a.gz"):
        assert data.read_idx(tmp_path / name).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_malformed_idx_with_matching_md5_fails_in_the_loader(tmp_path, monkeypatch):
    raw = _copy_mnist_test(tmp_path)
    bad = raw / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(gzip.decompress(bad.read_bytes()))
    blob[2] = 0x0D  # type code: float instead of unsigned byte
    bad.write_bytes(gzip.compress(bytes(blob)))
    monkeypatch.setitem(data.MD5["mnist"], bad.name, _md5(bad))
    with pytest.raises(ValueError, match="magic number"):
        data.load_mnist(tmp_path, train=False)


def test_not_gzip_but_gz_magic_is_reported(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DatasetError, match="not a valid gzip file"):
        data.read_idx(path)


# --------------------------------------------------------------------------------------------
# Conversions, names, loader
# --------------------------------------------------------------------------------------------
def test_uint8_round_trip_is_exact_and_endpoints_map_to_plus_minus_one():
    v = torch.arange(256, dtype=torch.uint8)
    x = data.from_uint8(v)
    assert x.dtype == torch.float32
    assert x[0].item() == -1.0 and x[255].item() == 1.0
    assert torch.equal(data.to_uint8(x), v)
    assert torch.equal(data.from_uint8(v.numpy()), x)
    assert data.to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]  # clipped
    assert data.to_uint8(torch.tensor([0.0])).item() == 128  # 127.5 rounds half to even: 128


def test_conversion_argument_errors():
    with pytest.raises(TypeError, match="uint8"):
        data.from_uint8(torch.zeros(3))
    with pytest.raises(TypeError, match="float"):
        data.to_uint8(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        data.to_uint8(torch.tensor([float("nan")]))


def test_load_dataset_names(tmp_path):
    with pytest.raises(ValueError, match="mnist, fashion_mnist, cifar10"):
        data.load_dataset("imagenet", tmp_path)
    for alias in ("MNIST", "Fashion-MNIST", "cifar-10"):
        with pytest.raises(FileNotFoundError):
            data.load_dataset(alias, tmp_path)
    with pytest.raises(TypeError, match="train"):
        data.load_mnist(tmp_path, train="test")


def _toy_dataset(n: int = 10) -> data.ImageDataset:
    images = torch.arange(n * 2 * 3, dtype=torch.float32).reshape(n, 1, 2, 3) / (n * 6) * 2 - 1
    return data.ImageDataset(images, torch.arange(n), classes=[str(i) for i in range(n)])


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_make_loader_is_reproducible_per_seed():
    ds = _toy_dataset()
    a = _epoch(data.make_loader(ds, batch_size=4, seed=1))
    b = _epoch(data.make_loader(ds, batch_size=4, seed=1))
    c = _epoch(data.make_loader(ds, batch_size=4, seed=2))
    assert [x.shape[0] for x, _ in a] == [4, 4, 2]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == list(range(10))  # a permutation
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))
    ordered = _epoch(data.make_loader(ds, batch_size=4, shuffle=False, drop_last=True))
    assert torch.cat([y for _, y in ordered]).tolist() == list(range(8))
    with pytest.raises(ValueError, match="batch_size"):
        data.make_loader(ds, batch_size=0)


def test_make_loader_hflip_flips_about_half_and_keeps_labels():
    ds = _toy_dataset(400)
    batches = _epoch(data.make_loader(ds, batch_size=64, seed=0, hflip=True))
    again = _epoch(data.make_loader(ds, batch_size=64, seed=0, hflip=True))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(batches, again))
    flipped = 0
    for x, y in batches:
        original = ds.images[y]
        same = (x == original).flatten(1).all(1)
        mirrored = (x == original.flip(-1)).flatten(1).all(1)
        assert bool((same | mirrored).all())
        flipped += int(mirrored.sum())
    # Binomial(400, 1/2): mean 200, sd 10; 5 sd either side.
    assert 150 <= flipped <= 250


# --------------------------------------------------------------------------------------------
# Downloads against a local HTTP server
# --------------------------------------------------------------------------------------------
# The `server` fixture (a loopback HTTP server) lives in tests/conftest.py.


@pytest.fixture
def mnist_server(server, monkeypatch):
    """The server with copies of the MNIST test files under /mnist/, set as the only mirror."""
    _need(*(MNIST_RAW / f for f in MNIST_TEST_FILES))
    for name in MNIST_TEST_FILES:
        server.files[f"/mnist/{name}"] = (MNIST_RAW / name).read_bytes()
    monkeypatch.setitem(data.MIRRORS, "mnist", [f"{server.url}/mnist/"])
    return server


def test_download_fetches_and_verifies(tmp_path, mnist_server):
    ds = data.load_mnist(tmp_path, train=False, download=True)
    raw = tmp_path / "MNIST" / "raw"
    assert _files_under(tmp_path) == [raw / name for name in sorted(MNIST_TEST_FILES)]
    for name in MNIST_TEST_FILES:
        assert _md5(raw / name) == data.MD5["mnist"][name]
        assert mnist_server.hits[f"/mnist/{name}"] == 1
    assert ds.images.shape == (10000, 1, 28, 28)
    data.load_mnist(tmp_path, train=False, download=True)  # already there: no new request
    assert sum(mnist_server.hits.values()) == 2


def test_download_of_corrupted_file_fails_cleanly(tmp_path, mnist_server):
    name = "t10k-images-idx3-ubyte.gz"
    blob = bytearray(mnist_server.files[f"/mnist/{name}"])
    blob[5000] ^= 0xFF
    mnist_server.files[f"/mnist/{name}"] = bytes(blob)
    with pytest.raises(DownloadError) as err:
        data.load_mnist(tmp_path, train=False, download=True)
    message = str(err.value)
    assert name in message and data.MD5["mnist"][name] in message and "md5 mismatch" in message
    assert mnist_server.hits[f"/mnist/{name}"] == 2  # retried once
    assert _files_under(tmp_path) == []  # neither the file nor a temporary one


def test_interrupted_download_is_retried_then_fails_cleanly(tmp_path, mnist_server):
    name = "t10k-images-idx3-ubyte.gz"
    mnist_server.modes[f"/mnist/{name}"] = "truncate"
    with pytest.raises(DownloadError, match="interrupted") as err:
        data.load_mnist(tmp_path, train=False, download=True)
    assert isinstance(err.value, FileNotFoundError) and name in str(err.value)
    assert str(tmp_path / "MNIST" / "raw" / name) in str(err.value) and "EDUDIFF_DATA" in str(err.value)
    assert mnist_server.hits[f"/mnist/{name}"] == 2
    assert _files_under(tmp_path) == []


def test_download_retry_succeeds_after_a_failure(tmp_path, mnist_server):
    name = "t10k-labels-idx1-ubyte.gz"
    mnist_server.modes[f"/mnist/{name}"] = "fail_once"
    assert len(data.load_mnist(tmp_path, train=False, download=True)) == 10000
    assert mnist_server.hits[f"/mnist/{name}"] == 2


def test_download_falls_back_to_the_next_mirror(tmp_path, mnist_server, monkeypatch):
    monkeypatch.setitem(data.MIRRORS, "mnist", [f"{mnist_server.url}/gone/", f"{mnist_server.url}/mnist/"])
    assert len(data.load_mnist(tmp_path, train=False, download=True)) == 10000
    assert mnist_server.hits["/gone/t10k-images-idx3-ubyte.gz"] == 2


def test_download_replaces_a_corrupted_local_file(tmp_path, mnist_server):
    raw = _copy_mnist_test(tmp_path)
    _flip_bytes(raw / "t10k-labels-idx1-ubyte.gz")
    ds = data.load_mnist(tmp_path, train=False, download=True)
    assert _md5(raw / "t10k-labels-idx1-ubyte.gz") == data.MD5["mnist"]["t10k-labels-idx1-ubyte.gz"]
    assert mnist_server.hits["/mnist/t10k-labels-idx1-ubyte.gz"] == 1
    assert mnist_server.hits["/mnist/t10k-images-idx3-ubyte.gz"] == 0
    assert torch.bincount(ds.labels).tolist() == MNIST_TEST_COUNTS


def _serve_cifar(server, monkeypatch, tarball: bytes) -> None:
    server.files["/kriz/cifar-10-python.tar.gz"] = tarball
    monkeypatch.setitem(data.MIRRORS, "cifar10", [f"{server.url}/kriz/"])
    table = {b: _md5(SUBSET / b) for b in CIFAR_BATCHES}
    table["cifar-10-python.tar.gz"] = hashlib.md5(tarball).hexdigest()
    monkeypatch.setitem(data.MD5, "cifar10", table)


@pytest.mark.parametrize("has_filter", [True, False], ids=["data-filter", "fallback-checks"])
def test_cifar10_download_refuses_an_archive_with_an_escaping_member(tmp_path, server, monkeypatch, has_filter):
    _need(*(SUBSET / b for b in CIFAR_BATCHES + ["batches.meta"]))
    if has_filter and not archives.HAS_DATA_FILTER:
        pytest.skip("this Python's tarfile has no extraction filters")
    monkeypatch.setattr(archives, "HAS_DATA_FILTER", has_filter)
    _serve_cifar(server, monkeypatch, cifar_subset_tarball(evil=True))
    root = tmp_path / "a" / "root"
    root.mkdir(parents=True)
    with pytest.raises(archives.UnsafeArchiveError, match=r"'\.\./escaped\.txt'.*download it again"):
        data.load_cifar10(root, train=True, download=True)
    assert not (tmp_path / "a" / "escaped.txt").exists()
    assert not (root / "cifar-10-batches-py").exists()  # nothing was moved into place
    assert [p.name for p in root.iterdir()] == ["cifar-10-python.tar.gz"]  # no temporary folder left


def test_cifar10_download_extracts_and_loads(tmp_path, server, monkeypatch):
    _need(*(SUBSET / b for b in CIFAR_BATCHES + ["batches.meta"]))
    _serve_cifar(server, monkeypatch, cifar_subset_tarball())
    server.modes["/kriz/cifar-10-python.tar.gz"] = "fail_once"
    root = tmp_path / "root"
    root.mkdir()

    train = data.load_cifar10(root, train=True, download=True)
    test = data.load_cifar10(root, train=False, download=True)
    assert (len(train), len(test)) == (5085, 1017)
    assert train.source == root / "cifar-10-batches-py"
    assert server.hits["/kriz/cifar-10-python.tar.gz"] == 2  # one failure, one retry, then cached
    extracted = sorted(p.name for p in (root / "cifar-10-batches-py").iterdir())
    assert extracted == sorted(CIFAR_BATCHES + ["batches.meta"])  # only the batches are moved into place
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    rows, labels = _decode_cifar_batch(SUBSET / "test_batch")
    assert np.array_equal(data.to_uint8(test.images).numpy().reshape(len(test), -1), rows)
    assert np.array_equal(test.labels.numpy(), labels)
