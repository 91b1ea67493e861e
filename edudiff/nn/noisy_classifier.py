r"""A classifier of *noisy* images, :math:`p_\phi(y \mid x_t, t)`: the guide of classifier guidance.

Classifier guidance (Dhariwal & Nichol 2021, sec. 4) steers an unconditional diffusion model with
:math:`\nabla_{x_t}\log p_\phi(y|x_t)` at every step, so the classifier must read the *noisy* :math:`x_t`
of every t, not only clean images: it is trained on :math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}
\epsilon` with t ~ U{1..T} (:func:`edudiff.training.train_noisy_classifier`). Like the paper's classifier (the
downsampling half of their U-Net), it takes t through the U-Net's timestep embedding:

::

    emb = MLP(timestep_embedding(t, ch))                     # as in edudiff.nn.UNet
    h   = conv3x3(x)                                         # (B, ch, H, W)
    for each level: h = ResBlock(h, emb); h = Downsample(h)  # 28 -> 14 -> 7 (the last level keeps its size)
    logits = Linear(mean_HW(SiLU(GroupNorm(h))))             # (B, num_classes)

Shapes: ``x`` (B, in_channels, image_size, image_size) in [-1, 1] scale, ``t`` (B,) integer timesteps 0..T
(0 = a clean image; the course's convention t = 1..T for noisy ones) -> logits (B, num_classes).

Taught in: notebooks/09_guiding_trained_models.ipynb.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_positive_int
from .blocks import Downsample, ResBlock, timestep_embedding
from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["NoisyClassifierConfig", "NoisyClassifier", "classifier_from_state", "load_classifier"]


@dataclass(frozen=True)
class NoisyClassifierConfig:
    """The shape of a :class:`NoisyClassifier`. The defaults suit MNIST (28x28, 10 digits): about 0.1 M parameters,
    levels of 16, 32 and 64 channels at 28, 14 and 7 pixels (cheap: guidance runs it forward and backward at every
    sampling step)."""

    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_groups: int = 8

    def __post_init__(self):
        check_positive_int(self.num_classes, "num_classes", minimum=2, fix="(the number of classes)")
        check_positive_int(self.in_channels, "in_channels", fix="(1 for MNIST, 3 for CIFAR-10)")
        check_positive_int(self.image_size, "image_size", fix="(the images' height = width)")
        check_positive_int(self.base_channels, "base_channels", fix="(the first level's width)")
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        if not self.channel_mults or any(not isinstance(m, int) or m < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be positive ints, one per level, got {self.channel_mults}")
        for c in (self.base_channels * m for m in self.channel_mults):
            if c % self.num_groups:
                raise ValueError(
                    f"every level's width must be divisible by num_groups={self.num_groups} (GroupNorm); level width "
                    f"{c} is not: change base_channels or num_groups"
                )
        if self.image_size % 2 ** (len(self.channel_mults) - 1):
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2^(levels - 1) = "
                f"{2 ** (len(self.channel_mults) - 1)}"
            )

    def to_dict(self) -> dict:
        return {**asdict(self), "channel_mults": list(self.channel_mults)}


class NoisyClassifier(nn.Module):
    r""":math:`p_\phi(y|x_t, t)` as logits: ``NoisyClassifier(config)(x_t, t) -> (B, num_classes)``.

    See the module docstring for the architecture. ``log_softmax`` of the logits is :math:`\log p_\phi(y|x_t)`,
    whose gradient in x_t :class:`edudiff.guidance.ClassifierGuidance` follows.
    """

    def __init__(self, config: NoisyClassifierConfig | None = None):
        super().__init__()
        cfg = config if config is not None else NoisyClassifierConfig()
        if not isinstance(cfg, NoisyClassifierConfig):
            raise TypeError(f"config must be a NoisyClassifierConfig, got {type(cfg).__name__}")
        self.config = cfg
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.blocks, self.downs = nn.ModuleList(), nn.ModuleList()
        c = ch
        for i, mult in enumerate(cfg.channel_mults):
            self.blocks.append(ResBlock(c, ch * mult, emb_dim, num_groups=cfg.num_groups))
            c = ch * mult
            last = i == len(cfg.channel_mults) - 1
            self.downs.append(nn.Identity() if last else Downsample(c))
        self.norm_out = nn.GroupNorm(cfg.num_groups, c)
        self.head = nn.Linear(c, cfg.num_classes)

    def check_inputs(self, x, t) -> None:
        """Raise a ValueError/TypeError naming ``x`` or ``t`` unless they fit this classifier."""
        cfg = self.config
        want = (cfg.in_channels, cfg.image_size, cfg.image_size)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {', '.join(map(str, want))}), got {got}")
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.shape[0] != x.shape[0]:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a tensor of shape (B,) = ({x.shape[0]},), one timestep per image; got {got}")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise TypeError(f"t must hold integer timesteps (a LongTensor), got dtype {t.dtype}")
        if bool((t < 0).any()):
            raise ValueError(f"t must be >= 0 (0 = a clean image, 1..T noisy), got min {int(t.min())}")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.check_inputs(x, t)
        emb = self.time_embed(timestep_embedding(t, self.config.base_channels, dtype=x.dtype))
        h = self.conv_in(x)
        for block, down in zip(self.blocks, self.downs):
            h = down(block(h, emb))
        h = F.silu(self.norm_out(h)).mean(dim=(2, 3))
        return self.head(h)


def classifier_from_state(state: dict, path: str | os.PathLike = "checkpoint", key: str = "model") -> NoisyClassifier:
    """The :class:`NoisyClassifier` held by a loaded checkpoint ``state`` (keys ``classifier_config`` and ``key``,
    float16 weights are cast to float32), in eval mode. Raises :class:`~edudiff.nn.CheckpointError` naming
    ``path`` when the state is not a classifier's."""
    if "classifier_config" not in state or key not in state:
        raise CheckpointError(
            f"{path} is not a noisy classifier's checkpoint (it lacks 'classifier_config' or '{key}'); expected a "
            "file written by `python -m edudiff train-classifier`"
        )
    model = NoisyClassifier(NoisyClassifierConfig(**state["classifier_config"]))
    try:
        model.load_state_dict({k: v.float() for k, v in state[key].items()})
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not fit the classifier's configuration ({err})") from err
    return model.eval()


def load_classifier(path: str | os.PathLike) -> tuple[NoisyClassifier, dict]:
    """Read a classifier checkpoint (weights-only): ``(classifier, state)``."""
    state = load_checkpoint(path, required=("classifier_config", "model"))
    return classifier_from_state(state, path), state
