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

Its hyperparameters and the presets (``ddpm_cifar10``, ``mnist_cpu``, ...) are in :mod:`edudiff.nn.unet_config`;
the pieces (timestep embedding, residual and attention blocks, resampling) in :mod:`edudiff.nn.blocks`.

Taught in: notebooks/06_unet_mnist.ipynb (piece by piece, shapes printed with :func:`describe`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import AttentionBlock, Downsample, ResBlock, Upsample, timestep_embedding
from .unet_config import UNetConfig

__all__ = ["UNet", "count_parameters", "describe"]


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

        # Timestep -> sinusoid (ch) -> MLP -> emb (4ch), shared by every residual block.
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # Class label (K classes + the null label K) -> a vector added to the time embedding.
        if cfg.num_classes is not None:
            self.label_embed = nn.Embedding(cfg.num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        # Down path; skip_channels records the width of every tensor pushed onto the skip stack.
        self.down, c, skip_channels = self._down_path(emb_dim)
        # Middle: Res - Attn - Res at the lowest resolution.
        self.mid_res1 = self._res(c, c, emb_dim)
        self.mid_attn = AttentionBlock(c, cfg.num_heads, groups, cfg.zero_init)
        self.mid_res2 = self._res(c, c, emb_dim)
        # Up path: one more block per level, each eating one skip (popped in reverse order).
        self.up, c = self._up_path(emb_dim, c, skip_channels)
        assert not skip_channels, "every skip must be used exactly once"

        self.norm_out = nn.GroupNorm(groups, c)
        self.conv_out = nn.Conv2d(c, cfg.out_channels, 3, padding=1)
        if cfg.zero_init:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)

    def _res(self, c_in: int, c_out: int, emb_dim: int) -> ResBlock:
        cfg = self.config
        return ResBlock(c_in, c_out, emb_dim, cfg.dropout, cfg.num_groups, cfg.zero_init)

    def _attn(self, c: int, resolution: int) -> nn.Module:
        cfg = self.config
        if resolution in cfg.attention_resolutions:
            return AttentionBlock(c, cfg.num_heads, cfg.num_groups, cfg.zero_init)
        return nn.Identity()

    def _down_path(self, emb_dim: int) -> tuple[nn.ModuleList, int, list[int]]:
        """The encoder's levels, the width after them, and the width of every skip tensor (in push order)."""
        cfg = self.config
        last = cfg.num_levels - 1
        c, skip_channels = cfg.base_channels, [cfg.base_channels]
        down = nn.ModuleList()
        for i, (c_out, r, n) in enumerate(
            zip(cfg.level_channels(), cfg.level_resolutions(), cfg.res_blocks_per_level())
        ):
            blocks, attns = [], []
            for _ in range(n):
                blocks.append(self._res(c, c_out, emb_dim))
                attns.append(self._attn(c_out, r))
                c = c_out
                skip_channels.append(c)
            sample = Downsample(c) if i != last else None
            if sample is not None:
                skip_channels.append(c)
            down.append(Level(blocks, attns, sample))
        return down, c, skip_channels

    def _up_path(self, emb_dim: int, c: int, skip_channels: list[int]) -> tuple[nn.ModuleList, int]:
        """The decoder's levels (each block concatenates one skip, popped from ``skip_channels``) and the width
        after them."""
        cfg = self.config
        up = nn.ModuleList()
        for i in reversed(range(cfg.num_levels)):
            c_out, r, n = cfg.level_channels()[i], cfg.level_resolutions()[i], cfg.res_blocks_per_level()[i]
            blocks, attns = [], []
            for _ in range(n + 1):
                blocks.append(self._res(c + skip_channels.pop(), c_out, emb_dim))
                attns.append(self._attn(c_out, r))
                c = c_out
            up.append(Level(blocks, attns, Upsample(c) if i != 0 else None))
        return up, c

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
