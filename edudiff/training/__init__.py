r"""Training a DDPM on images: Algorithm 1 at scale, shared by the notebooks and the command line.

The training layer: what turns a dataset and a :class:`TrainConfig` into trained weights. This package
exports the names the notebooks import. :func:`train` runs a :class:`Trainer` (the loop in
small named steps, after improved-diffusion's ``TrainLoop``: ``run_loop``, ``run_step``,
``forward_backward``, ``save``):

* **Algorithm 1** (Ho et al. 2020): x_0 from the data, t ~ U{1..T}, eps ~ N(0, I), gradient step on
  :math:`\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)\|^2`
  (eq. 14) -- the loss is :func:`edudiff.loss_simple`.
* The paper's recipe (Appendix B): Adam(W) at lr 2e-4 with a linear warm-up, gradient-norm clipping at 1,
  an exponential moving average (EMA) of the weights used for sampling, random horizontal flips on
  CIFAR-10, T = 1000, betas linear 1e-4 .. 0.02 (the recipes: :mod:`edudiff.training.recipes`).
* Speed: bf16 autocast (on CUDA by default; ``bf16=True`` on the CPU too), channels-last memory format
  (on CUDA by default), optional ``torch.compile``.
* Progress: a ``tqdm.auto`` bar with the loss and an ETA; periodic sample grids (PNG) from the EMA
  model; a ``log.jsonl`` of the loss; periodic **atomic checkpoints** (:mod:`edudiff.nn.checkpoint`).
* **Resuming is exact**: everything random is a function of saved state. The data order of epoch e is
  a permutation drawn from a generator seeded by (seed, e), so the batch of step s is known from s;
  t, eps and the flips come from a dedicated generator whose state is saved; dropout uses the torch
  global generator, whose state is saved too (per process). On CPU, training N steps straight and
  training N/2, stopping (Ctrl-C, a killed process, a time budget), and resuming to N give
  bit-identical weights. Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves ``last.pt`` and
  raises :class:`TrainingInterrupted`; ``minutes`` stops the same way but returns normally.
* **Several GPUs**: see :mod:`edudiff.training.distributed`.

The pieces live in their own modules: :mod:`edudiff.training.config` (:class:`TrainConfig`),
:mod:`edudiff.training.recipes` (the recommended settings), :mod:`edudiff.training.trainer` (the
:class:`Trainer`: set-up and one step), :mod:`edudiff.training.loop` (:func:`train`, the loop),
:mod:`edudiff.training.parts` (EMA, seeds, stopping, results), :mod:`edudiff.training.resume` (what a checkpoint
of a run holds and how a run resumes from it), :mod:`edudiff.training.distributed` (DDP),
:mod:`edudiff.training.classifier` (the noise-aware classifier of classifier guidance, notebook 09). Below this layer:
:mod:`edudiff.nn.checkpoint` (the checkpoint file, :func:`~edudiff.nn.checkpoint.load_model`) and
:mod:`edudiff.images` (sampling grids, PNG files, scores).

The command line: ``python -m edudiff train ...`` (:mod:`edudiff.cli`).

Taught in: notebooks/06_unet_mnist.ipynb (MNIST) and notebooks/07_cifar10.ipynb (CIFAR-10).
"""

from __future__ import annotations

from .classifier import noisy_accuracy, save_noisy_classifier, train_noisy_classifier
from .config import TrainConfig, build_model, unet_config_for
from .loop import train
from .parts import TrainingInterrupted, TrainResult, TrainState, ema_update, epoch_permutation
from .recipes import choose_mode, recipe
from .trainer import Trainer

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingInterrupted",
    "Trainer",
    "train",
    "build_model",
    "unet_config_for",
    "ema_update",
    "epoch_permutation",
    "choose_mode",
    "recipe",
    "train_noisy_classifier",
    "noisy_accuracy",
    "save_noisy_classifier",
]
