"""Data on first run: notebooks 02, 06 and 07 download what is missing.

Each notebook runs (nbclient) up to and including its first cell that loads a dataset, with
``EDUDIFF_DATA`` pointing at an empty folder and ``EDUDIFF_MIRROR`` at a loopback server holding the
canonical files -- as a fresh clone followed by ``make lab`` would, with the internet replaced by
127.0.0.1. Independent check: the files that land on disk have the canonical md5 sums, and the
server saw the requests.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat
import pytest
from dataset_paths import DATA, REPO, cifar_subset_tarball
from nbclient import NotebookClient

from edudiff import data

MNIST_RAW = DATA / "MNIST" / "raw"
SUBSET = DATA / "cifar-10-subset" / "cifar-10-batches-py"
pytestmark = pytest.mark.slow


def _run_until_first_load(notebook: str, loader: str, prelude: str = "") -> nbformat.NotebookNode:
    """Execute the notebook's code cells up to the first one that calls ``loader``; fail on any error."""
    nb = nbformat.read(REPO / "notebooks" / notebook, as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cells.append(cell)
        if f"{loader}(" in cell.source:
            break
    else:
        pytest.fail(f"{notebook} never calls {loader}()")
    if prelude:
        cells.insert(0, nbformat.v4.new_code_cell(prelude))
    nb.cells = cells
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}
    ).execute()
    return nb


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fresh_clone_env(tmp_path, server, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("EDUDIFF_DATA", str(root))
    monkeypatch.setenv("EDUDIFF_MIRROR", server.url + "/mirror")
    return root


@pytest.mark.parametrize(
    "notebook, files",
    [
        (
            "06_unet_mnist.ipynb",
            [
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz",
            ],
        ),
        ("02_closed_form_jump.ipynb", ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]),
    ],
)
def test_mnist_notebooks_download_on_first_run(fresh_clone_env, server, notebook, files):
    missing = [f for f in files if not (MNIST_RAW / f).is_file()]
    if missing:
        pytest.skip(f"offline MNIST files not found under {MNIST_RAW}: {missing}")
    for name in files:
        server.files[f"/mirror/mnist/{name}"] = (MNIST_RAW / name).read_bytes()
    nb = _run_until_first_load(notebook, "load_mnist")
    for name in files:
        path = fresh_clone_env / "MNIST" / "raw" / name
        assert path.is_file() and _md5(path) == data.MD5["mnist"][name], f"{path} missing or not canonical"
        assert server.hits[f"/mirror/mnist/{name}"] == 1
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "synthetic" not in text, "notebook 02 fell back to its synthetic digit instead of downloading"


def test_cifar10_notebook_downloads_on_first_run(fresh_clone_env, server):
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    if not all((SUBSET / b).is_file() for b in batches):
        pytest.skip(f"offline CIFAR-10 subset not found under {SUBSET}")
    tarball = cifar_subset_tarball()  # the canonical archive's layout, built from the real subset
    server.files["/mirror/cifar10/cifar-10-python.tar.gz"] = tarball
    # The subset cannot have the canonical md5s; the kernel is told the subset's (nothing else changes).
    table = {b: _md5(SUBSET / b) for b in batches if b.startswith(("data_batch", "test_batch"))}
    table["cifar-10-python.tar.gz"] = hashlib.md5(tarball).hexdigest()
    prelude = f"import edudiff.data\nedudiff.data.MD5['cifar10'] = {table!r}"
    _run_until_first_load("07_cifar10.ipynb", "load_cifar10", prelude)
    assert server.hits["/mirror/cifar10/cifar-10-python.tar.gz"] == 1
    for name in batches:
        assert _md5(fresh_clone_env / "cifar-10-batches-py" / name) == _md5(SUBSET / name)


def test_mirror_variable_comes_first(monkeypatch):
    monkeypatch.setenv("EDUDIFF_MIRROR", "http://classroom.example/data/")
    assert data.mirrors("mnist")[0] == "http://classroom.example/data/mnist/"
    assert data.mirrors("mnist")[1:] == data.MIRRORS["mnist"]
    monkeypatch.delenv("EDUDIFF_MIRROR")
    assert data.mirrors("cifar10") == data.MIRRORS["cifar10"]
