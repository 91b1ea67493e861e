"""The models layer: the networks that predict eps, and the checkpoint files that hold them.

* :mod:`~edudiff.nn.blocks`: the U-Net's pieces (timestep embedding, residual and attention blocks, resampling).
* :mod:`~edudiff.nn.unet_config`: :class:`UNetConfig` and the presets (:data:`PRESETS`).
* :mod:`~edudiff.nn.unet`: the DDPM U-Net, :func:`count_parameters`, :func:`describe`.
* :mod:`~edudiff.nn.noisy_classifier`: :class:`NoisyClassifier`, p(y | x_t, t) for classifier guidance (notebook 09).
* :mod:`~edudiff.nn.toy_models`: small MLP eps-models for the 1-D / 2-D toys, and their training.
* :mod:`~edudiff.nn.checkpoint`: checkpoint files (atomic save, weights-only load) and :func:`load_model`.

Stands on the math core (:mod:`edudiff.schedules`, :mod:`edudiff.losses`, ...); imports nothing from the layers
above (images, training, course).
"""

from .blocks import AttentionBlock, Downsample, ResBlock, Upsample, timestep_embedding
from .checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from .noisy_classifier import NoisyClassifier, NoisyClassifierConfig, classifier_from_state, load_classifier
from .unet import UNet, count_parameters, describe
from .unet_config import (
    PRESETS,
    UNetConfig,
    cifar10_small,
    cifar10_tiny,
    ddpm_cifar10,
    mnist_cpu,
    mnist_small,
    mnist_tiny,
)

__all__ = [
    "AttentionBlock", "Downsample", "ResBlock", "Upsample", "timestep_embedding",
    "CheckpointError", "load_checkpoint", "load_model", "save_checkpoint",
    "NoisyClassifier", "NoisyClassifierConfig", "classifier_from_state", "load_classifier",
    "UNet", "count_parameters", "describe",
    "PRESETS", "UNetConfig", "cifar10_small", "cifar10_tiny", "ddpm_cifar10", "mnist_cpu", "mnist_small", "mnist_tiny",
]  # fmt: skip
