r"""The U-Net's hyperparameters, :class:`UNetConfig`, and the course's presets (:data:`PRESETS`).

Presets (parameter counts of :class:`edudiff.nn.unet.UNet`):

* ``ddpm_cifar10()``   35,746,307  -- the paper's CIFAR-10 model, exactly (Ho et al. 2020, Appendix B).
* ``cifar10_small()``   6,472,195  -- a CIFAR-10 model for a laptop GPU.
* ``mnist_small()``     1,540,681  -- the course's MNIST model (28x28), built to train fast on CPU.
* ``mnist_cpu()``         686,769  -- ``mnist_small`` at 2/3 width, no dropout: the 30-minute CPU recipe's model.
* ``mnist_tiny()``        267,313  -- CI / ``EDUDIFF_FAST=1``: a training step in ~0.15 s on 2 cores.

Any preset takes keyword overrides, e.g. ``mnist_cpu(num_classes=10)`` for a class-conditional model.

Taught in: notebooks/06_unet_mnist.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .._validate import check_positive_int

__all__ = [
    "UNetConfig",
    "ddpm_cifar10",
    "cifar10_small",
    "cifar10_tiny",
    "mnist_small",
    "mnist_tiny",
    "mnist_cpu",
    "PRESETS",
]


# ----------------------------------------------------------------------------------------------
# Configuration and presets
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UNetConfig:
    r"""Hyperparameters of :class:`UNet`. The defaults are DDPM's CIFAR-10 model (:func:`ddpm_cifar10`).

    * ``in_channels`` / ``out_channels``: image channels in and out (eps_hat has ``out_channels``).
    * ``base_channels``: width ``ch`` after ``conv_in``; level i has ``ch * channel_mults[i]`` channels.
    * ``channel_mults``: one entry per resolution level; level i works at ``image_size / 2**i``.
    * ``num_res_blocks``: residual blocks per level on the way down (an int, or one int per level);
      the way up has one more per level.
    * ``attention_resolutions``: resolutions (in pixels, e.g. ``(16,)``) whose blocks are each followed
      by an :class:`AttentionBlock`. The middle block always has attention.
    * ``dropout``: in every residual block (DDPM: 0.1 on CIFAR-10).
    * ``image_size``: the training resolution; only used to place the attention layers
      (the network is convolutional and accepts any H, W divisible by ``2**(len(channel_mults)-1)``).
    * ``num_groups``: GroupNorm groups (must divide every channel count).
    * ``num_heads``: attention heads (DDPM: 1). ``zero_init``: zero the last conv of every residual
      block, the attention output projection and ``conv_out``, as DDPM does.
    * ``time_embed_mult``: the time-embedding MLP maps ``ch -> mult*ch -> mult*ch`` (DDPM: 4).
    * ``num_classes``: None = an unconditional model (DDPM). An int K makes the model class-conditional,
      :math:`\epsilon_\theta(x_t, t, y)`: an ``nn.Embedding(K + 1, mult*ch)`` of the label is added to the
      time embedding (improved-diffusion's ``num_classes``, diffusers' ``num_class_embeds``). Labels are
      0..K-1; index K is the learned "null" label (no class), which classifier-free guidance needs
      (Ho & Salimans 2022): training drops labels to it at random, sampling mixes eps(x, y) with eps(x, null).
    """

    in_channels: int = 3
    out_channels: int = 3
    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int | tuple[int, ...] = 2
    attention_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    image_size: int = 32
    num_groups: int = 32
    num_heads: int = 1
    zero_init: bool = True
    time_embed_mult: int = 4
    num_classes: int | None = None

    def __post_init__(self):
        for name in (
            "in_channels",
            "out_channels",
            "base_channels",
            "image_size",
            "num_groups",
            "num_heads",
            "time_embed_mult",
        ):
            check_positive_int(getattr(self, name), name)
        if self.num_classes is not None:
            check_positive_int(self.num_classes, "num_classes", fix="(e.g. 10 for MNIST; None = unconditional)")
        if len(self.channel_mults) < 1 or any(int(m) < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be a non-empty tuple of positive ints, got {self.channel_mults!r}")
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "attention_resolutions", tuple(int(r) for r in self.attention_resolutions))
        blocks = self.res_blocks_per_level()
        if any(n < 1 for n in blocks):
            raise ValueError(f"num_res_blocks must be >= 1 per level, got {self.num_res_blocks!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        unused = set(self.attention_resolutions) - set(self.level_resolutions())
        if unused:
            raise ValueError(
                f"attention_resolutions={self.attention_resolutions} includes {sorted(unused)}, "
                f"which is no level's resolution; with image_size={self.image_size} the levels "
                f"are at {self.level_resolutions()}"
            )
        for c in self.level_channels():
            if c % self.num_groups:
                raise ValueError(
                    f"num_groups={self.num_groups} must divide every channel count; "
                    f"{c} (from base_channels * channel_mults) is not divisible"
                )
            if c % self.num_heads:
                raise ValueError(f"num_heads={self.num_heads} must divide every channel count, not {c}")

    @property
    def num_levels(self) -> int:
        return len(self.channel_mults)

    def level_channels(self) -> list[int]:
        """Channels of each resolution level, e.g. [128, 256, 256, 256] for DDPM CIFAR-10."""
        return [self.base_channels * m for m in self.channel_mults]

    def level_resolutions(self) -> list[int]:
        """Nominal resolution of each level, e.g. [32, 16, 8, 4] for DDPM CIFAR-10."""
        return [self.image_size // 2**i for i in range(self.num_levels)]

    def res_blocks_per_level(self) -> list[int]:
        """``num_res_blocks`` as one int per level (down path; the up path has one more)."""
        n = self.num_res_blocks
        if isinstance(n, int) and not isinstance(n, bool):
            return [n] * self.num_levels
        n = [int(k) for k in n]
        if len(n) != self.num_levels:
            raise ValueError(
                f"num_res_blocks has {len(n)} entries but channel_mults has {self.num_levels} "
                f"levels; give one int, or one per level"
            )
        return n

    @property
    def divisor(self) -> int:
        """H and W must be divisible by this: ``2**(levels - 1)`` (one halving per downsample)."""
        return 2 ** (self.num_levels - 1)


def ddpm_cifar10(**overrides) -> UNetConfig:
    """The DDPM paper's CIFAR-10 model: 35.7M parameters (35,746,307), 32x32x3.

    ch=128, ch_mult=(1,2,2,2), 2 residual blocks per level, attention at 16x16, dropout 0.1,
    GroupNorm(32), time embedding 128 -> 512 -> 512 (Ho et al. 2020, Appendix B).
    ``overrides`` replace fields, e.g. ``ddpm_cifar10(dropout=0.0)``.
    """
    return replace(
        UNetConfig(
            in_channels=3,
            out_channels=3,
            base_channels=128,
            channel_mults=(1, 2, 2, 2),
            num_res_blocks=2,
            attention_resolutions=(16,),
            dropout=0.1,
            image_size=32,
            num_groups=32,
        ),
        **overrides,
    )


def cifar10_small(**overrides) -> UNetConfig:
    """A 6.5M-parameter CIFAR-10 model (32x32x3) for a laptop GPU: DDPM's layout at half the width
    (ch=64) with 3 levels (32, 16, 8; widths 64, 128, 128) and attention at 16x16 and in the middle.
    """
    return replace(
        UNetConfig(
            in_channels=3,
            out_channels=3,
            base_channels=64,
            channel_mults=(1, 2, 2),
            num_res_blocks=2,
            attention_resolutions=(16,),
            dropout=0.1,
            image_size=32,
            num_groups=32,
        ),
        **overrides,
    )


def mnist_small(**overrides) -> UNetConfig:
    """The course's MNIST model: 1.54M parameters (1,540,681), 28x28x1, three levels 28 -> 14 -> 7
    with 24, 48 and 96 channels. On a 2-core CPU it trains 2.6-2.8x as many images/s as a diffusers
    ``UNet2DModel`` of about the same size (1.71M: widths 32, 64, 64, two blocks per level, the
    default attention pattern; ``benchmarks/bench_unet.py``) -- by putting the parameters where they
    are cheap, not by leaving pieces out. (Against that model with attention moved to 7x7 like ours
    the factor is 1.6x: attention placement and the width/depth layout each give part of the gain.)

    * **Width doubles as resolution halves** (24, 48, 96 channels at 28, 14, 7 pixels). A 3x3 conv
      costs ``9 * C_in * C_out * H * W`` multiply-adds but has ``9 * C_in * C_out`` parameters, so
      this keeps the cost per layer the same at every level while the parameters go to 7x7
      (a parameter there costs 16x less compute than one at 28x28). That is where a digit's global
      shape is decided; at 28x28 the job is local -- sharp strokes -- and 24 channels are plenty for
      one-channel images. (Equal widths, e.g. 32, 64, 64, put the cost at 28x28 instead; so does a
      wide level 1, because ``Upsample``'s conv runs at level 1's width on the 28x28 grid.)
    * **One residual block per level on the way down** (so two on the way up), DDPM's two would
      double the full-resolution work; the skip connections still carry every level's detail.
    * **Attention only at 7x7** (49 tokens) and in the middle: it relates the two ends of a stroke
      where that is cheap; at 14x14 it would cost 16x more per block.
    * 28 is divisible by 4, so the digits are used as they are -- no padding to 32.
    * GroupNorm(8), time embedding 24 -> 96 -> 96, dropout 0.1 (MNIST overfits quickly).
    """
    return replace(
        UNetConfig(
            in_channels=1,
            out_channels=1,
            base_channels=24,
            channel_mults=(1, 2, 4),
            num_res_blocks=1,
            attention_resolutions=(7,),
            dropout=0.1,
            image_size=28,
            num_groups=8,
        ),
        **overrides,
    )


def mnist_cpu(**overrides) -> UNetConfig:
    """The CPU recipe's MNIST model: 686,769 parameters, ``mnist_small``'s layout (28 -> 14 -> 7, one residual
    block per level down, attention at 7x7 and in the middle) at 2/3 of its width (16, 32 and 64 channels)
    and without dropout. Measured on 2 cores at batch 128 (``benchmarks/README.md``): 109 training
    images/s against ``mnist_small``'s 60 (67 without dropout); in a 30-minute budget the extra images
    outweigh the lost width. Dropout only pays when a model sees the data many times; in 30 minutes it
    sees it about three times.
    """
    return replace(mnist_small(base_channels=16, dropout=0.0), **overrides)


def mnist_tiny(**overrides) -> UNetConfig:
    """A 0.27M-parameter MNIST model (267,313) for CI and ``EDUDIFF_FAST=1``: 28x28x1, levels
    28 -> 14 -> 7 with 16, 32, 32 channels, one residual block per level, attention only in the
    middle, no dropout. A training step at batch 32 takes about 0.15 s on 2 CPU cores.
    """
    return replace(
        UNetConfig(
            in_channels=1,
            out_channels=1,
            base_channels=16,
            channel_mults=(1, 2, 2),
            num_res_blocks=1,
            attention_resolutions=(),
            dropout=0.0,
            image_size=28,
            num_groups=8,
        ),
        **overrides,
    )


def cifar10_tiny(**overrides) -> UNetConfig:
    """A tiny CIFAR-10 model for CI / ``EDUDIFF_FAST=1`` (32x32x3, levels 32 -> 16 -> 8,
    widths 16, 32, 32, one residual block per level, attention only in the middle, no dropout)."""
    return replace(
        UNetConfig(
            in_channels=3,
            out_channels=3,
            base_channels=16,
            channel_mults=(1, 2, 2),
            num_res_blocks=1,
            attention_resolutions=(),
            dropout=0.0,
            image_size=32,
            num_groups=8,
        ),
        **overrides,
    )


#: Model presets by name (``--preset``); each returns a :class:`UNetConfig` (keyword overrides allowed).
PRESETS = {
    "mnist_tiny": mnist_tiny,
    "mnist_small": mnist_small,
    "mnist_cpu": mnist_cpu,
    "cifar10_tiny": cifar10_tiny,
    "cifar10_small": cifar10_small,
    "ddpm_cifar10": ddpm_cifar10,
}
