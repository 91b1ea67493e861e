"""Training a DDPM on images -- the names the notebooks import, gathered in one place.

The pieces live in their own modules: :mod:`edudiff.train_config` (:class:`TrainConfig`),
:mod:`edudiff.recipes` (the recommended settings), :mod:`edudiff.trainer` (:func:`train`, the loop),
:mod:`edudiff.train_parts` (EMA, seeds, stopping, results), :mod:`edudiff.distributed` (DDP),
:mod:`edudiff.checkpoint` (the checkpoint format, :func:`load_model`), :mod:`edudiff.generate`
(:func:`sample_images`, :func:`denoising_strip`), :mod:`edudiff.imageio` (PNG grids) and
:mod:`edudiff.plots` (:func:`show_images`, :func:`plot_denoising_strip`).

``python -m edudiff.train ...`` is an alias of ``python -m edudiff train ...`` (and
``python -m edudiff.train sample ...`` of ``python -m edudiff sample ...``).

Taught in: notebooks/06_unet_mnist.ipynb (MNIST) and notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

import sys

from .checkpoint import load_model
from .cli import train_module_main as main
from .data import DATASET_SHAPES
from .generate import denoising_strip, sample_images
from .imageio import make_grid, save_image_grid, write_png
from .plots import plot_denoising_strip, show_images
from .train_config import TrainConfig, build_model, unet_config_for
from .train_parts import TrainingInterrupted, TrainResult, TrainState, ema_update, epoch_permutation
from .trainer import Trainer, train
from .unet import PRESETS

__all__ = [
    "TrainConfig", "TrainResult", "TrainState", "TrainingInterrupted", "Trainer", "PRESETS", "DATASET_SHAPES",
    "train", "build_model", "unet_config_for", "load_model", "sample_images", "denoising_strip",
    "make_grid", "write_png", "save_image_grid", "show_images", "plot_denoising_strip",
    "ema_update", "epoch_permutation", "main",
]

if __name__ == "__main__":
    sys.exit(main())
