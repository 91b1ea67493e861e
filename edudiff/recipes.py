"""Training recipes as data: one row per (dataset, mode), read by :meth:`edudiff.train.TrainConfig.recommended`.

Modes: ``"fast"`` (CI and ``EDUDIFF_FAST=1``: a tiny model, a few hundred steps on a CPU), ``"cpu"`` (the
full run when no GPU is present) and ``"gpu"`` (the full run on CUDA). :func:`choose_mode` picks one:
"fast" in fast mode, else "gpu" on a CUDA device, else "cpu".

* MNIST / FashionMNIST, gpu: ``mnist_small``, 30k steps at batch 128, lr 2e-4 after 1000 warm-up
  steps, EMA 0.9995 -- about 64 epochs. (The cpu row is the same for now.)
* MNIST, fast: ``mnist_tiny``, 200 steps at batch 32, lr 1e-3, EMA 0.99.
* CIFAR-10, gpu and cpu: the paper's ``ddpm_cifar10`` (35.7M parameters), 800k steps at batch 128, lr 2e-4,
  5000 warm-up steps, EMA 0.9999, flips, dropout 0.1 (Ho et al. 2020, Appendix B).
* CIFAR-10, fast: ``cifar10_tiny``, 150 steps at batch 32, lr 1e-3, EMA 0.99.

Taught in: notebooks/06_unet_mnist.ipynb and notebooks/07_cifar10.ipynb.
"""

from __future__ import annotations

import torch

from .config import default_device, fast_mode
from .data import dataset_key

__all__ = ["MODES", "RECIPES", "choose_mode", "recipe"]

MODES = ("fast", "cpu", "gpu")

_MNIST_FAST = dict(
    preset="mnist_tiny",
    steps=200,
    batch_size=32,
    lr=1e-3,
    warmup=20,
    ema_decay=0.99,
    ckpt_every=100,
    sample_every=0,
    log_every=10,
    n_samples=16,
    ddim_steps=20,
)
_MNIST_FULL = dict(
    preset="mnist_small",
    steps=30_000,
    batch_size=128,
    lr=2e-4,
    warmup=1000,
    ema_decay=0.9995,
    ckpt_every=2000,
    sample_every=2000,
    log_every=50,
    n_samples=64,
    ddim_steps=50,
)
_CIFAR10_FAST = dict(
    preset="cifar10_tiny",
    steps=150,
    batch_size=32,
    lr=1e-3,
    warmup=20,
    ema_decay=0.99,
    ckpt_every=100,
    sample_every=0,
    log_every=10,
    n_samples=16,
    ddim_steps=20,
)
_CIFAR10_FULL = dict(
    preset="ddpm_cifar10",
    steps=800_000,
    batch_size=128,
    lr=2e-4,
    warmup=5000,
    ema_decay=0.9999,
    ckpt_every=5000,
    sample_every=10_000,
    log_every=100,
    n_samples=64,
    ddim_steps=50,
)

#: TrainConfig fields by (dataset, mode). FashionMNIST uses MNIST's rows.
RECIPES: dict[tuple[str, str], dict] = {
    ("mnist", "fast"): _MNIST_FAST,
    ("mnist", "cpu"): _MNIST_FULL,
    ("mnist", "gpu"): _MNIST_FULL,
    ("fashion_mnist", "fast"): _MNIST_FAST,
    ("fashion_mnist", "cpu"): _MNIST_FULL,
    ("fashion_mnist", "gpu"): _MNIST_FULL,
    ("cifar10", "fast"): _CIFAR10_FAST,
    ("cifar10", "cpu"): _CIFAR10_FULL,
    ("cifar10", "gpu"): _CIFAR10_FULL,
}


def choose_mode(fast: bool | None = None, device=None) -> str:
    """``"fast"`` when ``fast`` (default :func:`edudiff.fast_mode`), else ``"gpu"`` when ``device`` (default
    :func:`edudiff.default_device`) is CUDA, else ``"cpu"``."""
    if fast_mode() if fast is None else bool(fast):
        return "fast"
    device = default_device() if device is None else torch.device(device)
    return "gpu" if device.type == "cuda" else "cpu"


def recipe(dataset: str, mode: str) -> dict:
    """A copy of the recipe row for ``dataset`` and ``mode``, plus ``dataset`` and the default ``out`` folder
    (``runs/<dataset>``, ``runs/<dataset>_fast`` in fast mode)."""
    key = dataset_key(dataset, "dataset")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return dict(RECIPES[(key, mode)], dataset=key, out=f"runs/{key}{'_fast' if mode == 'fast' else ''}")
