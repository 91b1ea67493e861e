"""Training recipes as data: one row per (dataset, mode), read by :meth:`edudiff.training.TrainConfig.recommended`.

Modes: ``"fast"`` (CI and ``EDUDIFF_FAST=1``: a tiny model, a few hundred steps on a CPU), ``"cpu"`` (the
full run when no GPU is present) and ``"gpu"`` (the full run on CUDA). :func:`choose_mode` picks one:
"fast" in fast mode, else "gpu" on a CUDA device, else "cpu".

* MNIST / FashionMNIST, cpu: ``mnist_cpu`` (0.69M parameters, no dropout), 2800 steps at batch 64 (about
  30 minutes on 2 cores), lr 2e-3 after 100 warm-up steps, EMA 0.999 (with its warm-up), Min-SNR-5 loss
  weighting. Every choice was measured one at a time: ``benchmarks/README.md``.
* MNIST / FashionMNIST, gpu: ``mnist_small``, 30k steps at batch 128, lr 2e-4 after 1000 warm-up
  steps, EMA 0.9995 -- about 64 epochs (not yet run on a GPU by the course).
* MNIST, fast: ``mnist_tiny``, 200 steps at batch 32, lr 1e-3, EMA 0.99.
* CIFAR-10, gpu and cpu: the paper's ``ddpm_cifar10`` (35.7M parameters), 800k steps at batch 128, lr 2e-4,
  5000 warm-up steps, EMA 0.9999, flips, dropout 0.1 (Ho et al. 2020, Appendix B).
* CIFAR-10, fast: ``cifar10_tiny``, 150 steps at batch 32, lr 1e-3, EMA 0.99.

Taught in: notebooks/06_unet_mnist.ipynb and notebooks/07_cifar10.ipynb.
"""

from __future__ import annotations

import torch

from ..config import default_device, fast_mode
from ..data import dataset_key

__all__ = ["MODES", "RECIPES", "choose_mode", "recipe"]

MODES = ("fast", "cpu", "gpu")

# One row per (dataset, mode); the columns are TrainConfig fields. FashionMNIST uses MNIST's rows.
#: Steps of the MNIST CPU recipe: about 30 minutes of training on 2 cores at the measured ~105 images/s
#: (batch 64), i.e. about 190k images, three passes over MNIST.
CPU_STEPS = 2800

_COLUMNS = ("preset", "steps", "batch_size", "lr", "warmup", "lr_decay", "ema_decay", "min_snr_gamma",
            "ckpt_every", "sample_every", "log_every", "n_samples", "ddim_steps")  # fmt: skip
_ROWS = {
    #                        preset         steps batch    lr warmup decay         ema minsnr  ckpt sample log  n ddim
    ("mnist", "fast"):    ("mnist_tiny",      200,   32, 1e-3,   20, "constant",  0.99, None,  100,     0, 10, 16, 20),
    ("mnist", "cpu"):     ("mnist_cpu",  CPU_STEPS,  64, 2e-3,  100, "constant", 0.999,  5.0,  500,  1000, 50, 64, 50),
    ("mnist", "gpu"):     ("mnist_small",  30_000,  128, 2e-4, 1000, "constant", 0.9995, None, 2000,  2000, 50, 64, 50),
    ("cifar10", "fast"):  ("cifar10_tiny",    150,   32, 1e-3,   20, "constant",  0.99, None,  100,     0, 10, 16, 20),
    ("cifar10", "cpu"): ("ddpm_cifar10", 800_000, 128, 2e-4, 5000, "constant", 0.9999, None, 5000, 10_000, 100, 64, 50),
    ("cifar10", "gpu"): ("ddpm_cifar10", 800_000, 128, 2e-4, 5000, "constant", 0.9999, None, 5000, 10_000, 100, 64, 50),
}  # fmt: skip

#: TrainConfig fields by (dataset, mode).
RECIPES: dict[tuple[str, str], dict] = {key: dict(zip(_COLUMNS, row)) for key, row in _ROWS.items()}
RECIPES.update({("fashion_mnist", mode): RECIPES[("mnist", mode)] for mode in MODES})


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
