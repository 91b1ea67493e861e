"""Run-time settings shared by the package and the notebooks.

- ``EDUDIFF_DATA``: where datasets live (torchvision's on-disk layout: ``MNIST/raw/*.gz``,
  ``cifar-10-batches-py/``). Default: ``data/`` in the repository (or ``./data``).
- ``EDUDIFF_FAST``: ``1`` makes the training notebooks run a small, CPU-sized version
  (CI and ``make test`` set it); unset/``0`` is the full mode a student on a GPU runs.

Taught in: every notebook's first cell.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

_REPO_ROOT = Path(__file__).resolve().parent.parent
_TRUE = {"1", "true", "yes", "on"}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: ``root`` if given, else ``$EDUDIFF_DATA``, else the repo's ``data/``.

    A source checkout uses ``<repo>/data``; an installed package without one uses ``./data``.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("EDUDIFF_DATA")
    if env:
        return Path(env).expanduser()
    repo_data = _REPO_ROOT / "data"
    if (_REPO_ROOT / "pyproject.toml").exists():
        return repo_data
    return Path.cwd() / "data"


def fast_mode() -> bool:
    """True when ``EDUDIFF_FAST`` is set to 1/true/yes/on: small models, few steps (CI, CPU)."""
    return os.environ.get("EDUDIFF_FAST", "").strip().lower() in _TRUE


def default_device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU. Never hard-code ``cuda``."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
