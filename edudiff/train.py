r"""Training a DDPM on images: Algorithm 1 at scale, shared by the notebooks and the command line.

This module gathers the names the notebooks import. :func:`train` runs a :class:`Trainer` (the loop in
small named steps, after improved-diffusion's ``TrainLoop``: ``run_loop``, ``run_step``,
``forward_backward``, ``save``):

* **Algorithm 1** (Ho et al. 2020): x_0 from the data, t ~ U{1..T}, eps ~ N(0, I), gradient step on
  :math:`\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)\|^2`
  (eq. 14) -- the loss is :func:`edudiff.loss_simple`.
* The paper's recipe (Appendix B): Adam(W) at lr 2e-4 with a linear warm-up, gradient-norm clipping at 1,
  an exponential moving average (EMA) of the weights used for sampling, random horizontal flips on
  CIFAR-10, T = 1000, betas linear 1e-4 .. 0.02 (the recipes: :mod:`edudiff.recipes`).
* Speed: bf16 autocast (on CUDA by default; ``bf16=True`` on the CPU too), channels-last memory format
  (on CUDA by default), optional ``torch.compile``.
* Progress: a ``tqdm.auto`` bar with the loss and an ETA; periodic sample grids (PNG) from the EMA
  model; a ``log.jsonl`` of the loss; periodic **atomic checkpoints** (:mod:`edudiff.checkpoint`).
* **Resuming is exact**: everything random is a function of saved state. The data order of epoch e is
  a permutation drawn from a generator seeded by (seed, e), so the batch of step s is known from s;
  t, eps and the flips come from a dedicated generator whose state is saved; dropout uses the torch
  global generator, whose state is saved too (per process). On CPU, training N steps straight and
  training N/2, stopping (Ctrl-C, a killed process, a time budget), and resuming to N give
  bit-identical weights. Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves ``last.pt`` and
  raises :class:`TrainingInterrupted`; ``minutes`` stops the same way but returns normally.
* **Several GPUs**: see :mod:`edudiff.distributed`.

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
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingInterrupted",
    "Trainer",
    "PRESETS",
    "DATASET_SHAPES",
    "train",
    "build_model",
    "unet_config_for",
    "load_model",
    "sample_images",
    "denoising_strip",
    "make_grid",
    "write_png",
    "save_image_grid",
    "show_images",
    "plot_denoising_strip",
    "ema_update",
    "epoch_permutation",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
