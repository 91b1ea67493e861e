r"""The DDPM U-Net: the network :math:`\epsilon_\theta(x_t, t)` that predicts the noise.

Ho et al. (2020), Sec. 4 and Appendix B: a PixelCNN++-style U-Net (Salimans et al. 2017) built from
wide-ResNet blocks with group normalisation, self-attention at the 16x16 resolution, and the
timestep t fed to every residual block through a sinusoidal embedding (Transformer, Vaswani et al.
2017). The training loss (eq. 14, "L_simple") only needs ``eps_hat = model(x_t, t)`` to have the
shape of ``x_t``.

Picture of the network (``ddpm_cifar10()``, 32x32x3 input, channels x resolution)::

    x (3x32)  -conv_in-> 128x32 ─ Res ─ Res ─ Down ─────────────────────────────── (skips) ──┐
                         256x16 ─ Res+Attn ─ Res+Attn ─ Down                                  │
                         256x8  ─ Res ─ Res ─ Down                                            │
                         256x4  ─ Res ─ Res                                                   │
                         middle:  Res ─ Attn ─ Res                                            │
                         256x4  ─ 3 x Res(cat skip) ─ Up          <── skips popped in reverse ┘
                         256x8  ─ 3 x Res(cat skip) ─ Up
                         256x16 ─ 3 x (Res(cat skip) + Attn) ─ Up
                         128x32 ─ 3 x Res(cat skip) ─ GroupNorm ─ SiLU ─ conv_out -> eps_hat (3x32)

Every skip saved on the way down (after ``conv_in``, after each residual block, after each
downsample) is concatenated, in reverse order, onto the input of one residual block on the way up;
that is why each up level has ``num_res_blocks + 1`` blocks.

Shapes: ``x`` is (B, C, H, W) in [-1, 1]-ish scale (x_t is noisy data); ``t`` is a LongTensor (B,)
of timesteps in 1..T (the paper's convention, see DEVELOPERS.md). ``eps_hat`` is (B, C_out, H, W).

Presets (parameter counts):

* ``ddpm_cifar10()``   35,746,307  -- the paper's CIFAR-10 model, exactly.
* ``cifar10_small()``   6,472,195  -- a CIFAR-10 model for a laptop GPU.
* ``mnist_small()``     1,540,681  -- the course's MNIST model (28x28), built to train fast on CPU.
* ``mnist_cpu()``         686,769  -- ``mnist_small`` at 2/3 width, no dropout: the 30-minute CPU recipe's model.
* ``mnist_tiny()``        267,313  -- CI / ``EDUDIFF_FAST=1``: a training step in ~0.15 s on 2 cores.

Taught in: notebooks/06_unet_mnist.ipynb (piece by piece, shapes printed with :func:`describe`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_positive_int

# The pieces (timestep embedding, residual and attention blocks, resampling) live in edudiff.unet_blocks;
# re-exported here, where the notebooks import them.
from .unet_blocks import AttentionBlock, Downsample, ResBlock, Upsample, timestep_embedding

__all__ = [
    "timestep_embedding",
    "ResBlock",
    "AttentionBlock",
    "Downsample",
    "Upsample",
    "UNetConfig",
    "UNet",
    "ddpm_cifar10",
    "cifar10_small",
    "cifar10_tiny",
    "mnist_small",
    "mnist_tiny",
    "mnist_cpu",
    "PRESETS",
    "count_parameters",
    "describe",
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


# ----------------------------------------------------------------------------------------------
# The U-Net
# ----------------------------------------------------------------------------------------------
class Level(nn.Module):
    """One resolution level: residual blocks, each followed by attention (or nothing), then a
    down- or upsampling layer (or nothing). A container only; :class:`UNet` walks it."""

    def __init__(self, res: list[ResBlock], attn: list[nn.Module], sample: nn.Module | None):
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)
        self.sample = sample if sample is not None else nn.Identity()


class UNet(nn.Module):
    r"""The DDPM noise-prediction network: ``eps_hat = UNet(config)(x_t, t)``.

    ``forward(x, t, y=None)``: ``x`` (B, in_channels, H, W) float, H and W divisible by ``config.divisor``;
    ``t`` (B,) integer timesteps (1..T) -> ``eps_hat`` (B, out_channels, H, W). A class-conditional model
    (``config.num_classes = K``) also takes ``y``, a LongTensor (B,) of labels in 0..K, where K
    (:attr:`null_label`) means "no class"; ``y=None`` is the null label for every row. An unconditional
    model refuses labels.

    Works with ``model.to(memory_format=torch.channels_last)`` and under
    ``torch.autocast(device_type, dtype=torch.bfloat16)``.

    Taught in: notebooks/06_unet_mnist.ipynb.
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        cfg = config if config is not None else UNetConfig()
        if not isinstance(cfg, UNetConfig):
            raise TypeError(f"config must be a UNetConfig (e.g. mnist_small()), got {type(cfg).__name__}")
        self.config = cfg
        ch, emb_dim, groups = cfg.base_channels, cfg.base_channels * cfg.time_embed_mult, cfg.num_groups

        def res(c_in, c_out):
            return ResBlock(c_in, c_out, emb_dim, cfg.dropout, groups, cfg.zero_init)

        def attn(c, resolution):
            if resolution in cfg.attention_resolutions:
                return AttentionBlock(c, cfg.num_heads, groups, cfg.zero_init)
            return nn.Identity()

        # Timestep -> sinusoid (ch) -> MLP -> emb (4ch), shared by every residual block.
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # Class label (K classes + the null label K) -> a vector added to the time embedding.
        if cfg.num_classes is not None:
            self.label_embed = nn.Embedding(cfg.num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        # Down path. skip_channels records the width of every tensor pushed onto the skip stack.
        last = cfg.num_levels - 1
        c, skip_channels = ch, [ch]
        self.down = nn.ModuleList()
        for i, (c_out, r, n) in enumerate(
            zip(cfg.level_channels(), cfg.level_resolutions(), cfg.res_blocks_per_level())
        ):
            blocks, attns = [], []
            for _ in range(n):
                blocks.append(res(c, c_out))
                attns.append(attn(c_out, r))
                c = c_out
                skip_channels.append(c)
            sample = Downsample(c) if i != last else None
            if sample is not None:
                skip_channels.append(c)
            self.down.append(Level(blocks, attns, sample))

        # Middle: Res - Attn - Res at the lowest resolution.
        self.mid_res1 = res(c, c)
        self.mid_attn = AttentionBlock(c, cfg.num_heads, groups, cfg.zero_init)
        self.mid_res2 = res(c, c)

        # Up path: one more block per level, each eating one skip (popped in reverse order).
        self.up = nn.ModuleList()
        for i in reversed(range(cfg.num_levels)):
            c_out, r, n = cfg.level_channels()[i], cfg.level_resolutions()[i], cfg.res_blocks_per_level()[i]
            blocks, attns = [], []
            for _ in range(n + 1):
                blocks.append(res(c + skip_channels.pop(), c_out))
                attns.append(attn(c_out, r))
                c = c_out
            self.up.append(Level(blocks, attns, Upsample(c) if i != 0 else None))
        assert not skip_channels, "every skip must be used exactly once"

        self.norm_out = nn.GroupNorm(groups, c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)
        if cfg.zero_init:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def check_inputs(self, x, t) -> None:
        """Raise a ValueError/TypeError naming ``x`` or ``t`` unless they fit this network."""
        cfg = self.config
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}; use x.float()")
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"x has {x.shape[1]} channels (shape {tuple(x.shape)}) but the model expects "
                f"in_channels={cfg.in_channels}"
            )
        H, W = x.shape[-2:]
        if H % cfg.divisor or W % cfg.divisor:
            raise ValueError(
                f"x has shape {tuple(x.shape)}: height and width must be divisible by "
                f"{cfg.divisor} = 2**(levels-1) for {cfg.num_levels} levels; pad the images "
                f"(e.g. F.pad(x, (2, 2, 2, 2)) takes 28x28 to 32x32) or change channel_mults"
            )
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"t must be a LongTensor of shape (B,), got {type(t).__name__}")
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise TypeError(f"t must hold integer timesteps (torch.long), got dtype {t.dtype}; use t.long()")
        if t.ndim != 1 or t.shape[0] != x.shape[0]:
            raise ValueError(
                f"t must have shape (B,) = ({x.shape[0]},), one timestep per row of x; got shape {tuple(t.shape)}"
            )

    @property
    def null_label(self) -> int | None:
        """The label that means "no class" (= ``num_classes``); None for an unconditional model."""
        return self.config.num_classes

    def check_labels(self, y, batch: int) -> None:
        """Raise a ValueError/TypeError naming ``y`` unless it is a valid label batch for this model."""
        k = self.config.num_classes
        if k is None:
            raise ValueError(
                "y (class labels) was given to an unconditional model (config.num_classes is None); "
                "drop the labels, or train a class-conditional model (UNetConfig(num_classes=...), "
                "--class-conditional)"
            )
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"y must be a LongTensor of shape (B,) of class labels, got {type(y).__name__}")
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise TypeError(f"y must hold integer class labels (torch.long), got dtype {y.dtype}; use y.long()")
        if y.ndim != 1 or y.shape[0] != batch:
            raise ValueError(f"y must have shape (B,) = ({batch},), one label per row of x; got {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > k):
            raise ValueError(
                f"y holds labels in {int(y.min())}..{int(y.max())}, outside 0..{k}: use 0..{k - 1} for the "
                f"classes and {k} (model.null_label) for 'no class'"
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(x, t)
        emb = self.time_embed(timestep_embedding(t, self.config.base_channels))  # (B, 4ch)
        if y is not None or self.config.num_classes is not None:
            if y is None:
                y = torch.full((x.shape[0],), self.config.num_classes, dtype=torch.long, device=x.device)
            self.check_labels(y, x.shape[0])
            emb = emb + self.label_embed(y.to(x.device)).to(emb.dtype)

        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for block, attn in zip(level.res, level.attn):
                h = attn(block(h, emb))
                skips.append(h)
            if not isinstance(level.sample, nn.Identity):
                h = level.sample(h)
                skips.append(h)

        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb)), emb)

        for level in self.up:
            for block, attn in zip(level.res, level.attn):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
            h = level.sample(h)

        return self.conv_out(F.silu(self.norm_out(h)))


# ----------------------------------------------------------------------------------------------
# Helpers for the notebook
# ----------------------------------------------------------------------------------------------
def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters, e.g. 35,746,307 for ``UNet(ddpm_cifar10())``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def describe(model: UNet, x: torch.Tensor, t: torch.Tensor, print_fn=print) -> list[tuple[str, str, tuple, int]]:
    """Run ``model(x, t)`` once (no grad) and print, in execution order, every block's output shape.

    Rows are ``(name, kind, output_shape, parameters)``, e.g.
    ``("down.0.res.0", "ResBlock", (8, 32, 28, 28), 22784)``; they are also returned.
    Blocks listed: ``time_embed``, ``conv_in``, every ResBlock / AttentionBlock / Downsample /
    Upsample, ``norm_out`` and ``conv_out``.

    Taught in: notebooks/06_unet_mnist.ipynb.
    """
    rows: list[tuple[str, str, tuple, int]] = []
    kinds = (ResBlock, AttentionBlock, Downsample, Upsample)
    top = {"time_embed", "conv_in", "norm_out", "conv_out"}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, kinds) or name in top:

            def hook(mod, args, out, name=name):
                rows.append((name, type(mod).__name__, tuple(out.shape), count_parameters(mod)))

            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(x, t)
    finally:
        for h in hooks:
            h.remove()
    width = max(len(r[0]) for r in rows)
    print_fn(f"{'block':<{width}}  {'kind':<15} {'output shape':<22} {'params':>11}")
    print_fn(f"{'input x':<{width}}  {'':<15} {str(tuple(x.shape)):<22} {'':>11}")
    for name, kind, shape, n in rows:
        print_fn(f"{name:<{width}}  {kind:<15} {str(shape):<22} {n:>11,}")
    print_fn(f"{'eps_hat':<{width}}  {'':<15} {str(tuple(out.shape)):<22} {count_parameters(model):>11,} total")
    return rows
