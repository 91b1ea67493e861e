r"""The pieces of the DDPM U-Net (:mod:`edudiff.nn`): the sinusoidal timestep embedding, the wide-ResNet
block with the embedding added, self-attention over pixels, and down/upsampling.

Shapes: feature maps (B, C, H, W); timesteps t a LongTensor (B,) in 1..T; embeddings (B, D).

Taught in: notebooks/06_unet_mnist.ipynb (piece by piece).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_positive_int

__all__ = ["timestep_embedding", "ResBlock", "AttentionBlock", "Downsample", "Upsample"]


# ----------------------------------------------------------------------------------------------
# The pieces
# ----------------------------------------------------------------------------------------------
def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    max_period: float = 10000.0,
    t_scale: float = 1.0,
    freq_denominator: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""Sinusoidal embedding of the timesteps, as in DDPM (and the Transformer's positions).

    With ``half = dim // 2`` frequencies :math:`\omega_i = \text{max\_period}^{-i/(\text{half}-1)}`,
    :math:`i = 0..\text{half}-1` (from 1 down to 1/max_period), the embedding is

    .. math:: \text{emb}(t) = [\sin(t\,\omega_0), ..., \sin(t\,\omega_{\text{half}-1}),
                               \cos(t\,\omega_0), ..., \cos(t\,\omega_{\text{half}-1})]

    (one zero column is appended when ``dim`` is odd). This is DDPM's ``get_timestep_embedding``.
    Nearby t get nearby vectors, far-apart t nearly orthogonal ones, and the network can read
    t at every scale from the fast (fine) to the slow (coarse) frequencies.

    Two variants share this code: ``t_scale`` multiplies t first (the toy models of notebook 05 use
    ``1000 / T``, so the frequencies suit any T), and ``freq_denominator`` replaces half-1 in the
    exponent (the Transformer's spacing ``max_period^{-i/half}`` is ``freq_denominator=half``, used by
    :class:`edudiff.nn.toy_models.SinusoidalTimeEmbedding`). The defaults are DDPM's.

    Args: ``t`` (B,) timesteps, 1..T by this course's convention (a LongTensor; it is used as float,
    so float t -- e.g. for interpolation plots -- also works); ``dim`` >= 2; ``dtype`` of the result (the
    frequencies are computed in float32 and then cast).
    Returns: tensor (B, dim) of ``dtype`` (float32) on ``t``'s device.

    Taught in: notebooks/06_unet_mnist.ipynb.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a tensor of shape (B,), got {type(t).__name__}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), one timestep per batch row; got shape {tuple(t.shape)}")
    check_positive_int(dim, "dim", minimum=2, fix="(the embedding width)")
    half = dim // 2
    # With half == 1 there is one frequency, omega_0 = 1.
    denominator = max(half - 1, 1) if freq_denominator is None else freq_denominator
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / denominator)
    angles = (t.to(dtype) * t_scale)[:, None] * freqs.to(dtype)[None, :]  # (B, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (B, 2*half)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    r"""Wide-ResNet block with the time embedding added in the middle (DDPM's ``resnet_block``).

    ::

        h = conv3x3(SiLU(GroupNorm(x)))                  # in_ch  -> out_ch
        h = h + Linear(SiLU(emb))[:, :, None, None]      # the timestep, one bias per channel
        h = conv3x3(dropout(SiLU(GroupNorm(h))))         # out_ch -> out_ch  (zero-initialised)
        return skip(x) + h                               # skip = 1x1 conv if in_ch != out_ch

    Zero-initialising the last conv (as DDPM does, ``init_scale=0``; ``UNetConfig.zero_init``) makes
    every block start as its skip connection, so the deep network starts out as a shallow one and
    trains stably.

    Shapes: ``x`` (B, in_ch, H, W), ``emb`` (B, emb_dim) -> (B, out_ch, H, W).

    Taught in: notebooks/06_unet_mnist.ipynb.
    """

    def __init__(
        self, in_ch: int, out_ch: int, emb_dim: int, dropout: float = 0.0, num_groups: int = 32, zero_init: bool = True
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(num_groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        if zero_init:
            nn.init.zeros_(self.conv2.weight)
            nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    r"""Self-attention over the H*W pixels, with a residual connection (DDPM's ``attn_block``).

    The feature map is read as a sequence of H*W tokens of C channels each::

        h = GroupNorm(x) as tokens                       # (B, H*W, C)
        q, k, v = split(Linear(h))                       # each (B, heads, H*W, C/heads)
        a = softmax(q k^T / sqrt(C/heads)) v             # F.scaled_dot_product_attention
        return x + Linear(a) as a feature map            # output projection zero-initialised

    Every pixel can look at every other one: convolutions only see a 3x3 neighbourhood, attention
    gives the low-resolution feature maps a global view. DDPM uses one head (``num_heads=1``) and
    per-pixel dense layers (its ``nin``), i.e. the ``Linear`` layers here (= 1x1 convolutions).
    Cost grows like (H*W)^2, so it is used at low resolutions only.

    Shapes: (B, C, H, W) -> (B, C, H, W).

    Taught in: notebooks/06_unet_mnist.ipynb.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_groups: int = 32, zero_init: bool = True):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the channel count {channels}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)  # q, k and v projections in one layer
        self.proj_out = nn.Linear(channels, channels)
        if zero_init:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        heads = self.num_heads
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(B, H * W, C)  # (B, HW, C)
        qkv = self.qkv(tokens).reshape(B, H * W, 3, heads, C // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, HW, C/heads)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        a = a.transpose(1, 2).reshape(B, H * W, C)  # heads side by side again
        out = self.proj_out(a).reshape(B, H, W, C).permute(0, 3, 1, 2)  # (B, C, H, W)
        return x + out


class Downsample(nn.Module):
    r"""Halve the resolution with a stride-2 3x3 conv (channels unchanged).

    DDPM's TensorFlow code pads asymmetrically ('SAME'); padding 1 on all sides gives the same
    output size and the same parameters. Shapes: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)).

    Taught in: notebooks/06_unet_mnist.ipynb.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    r"""Double the resolution: nearest-neighbour upsampling, then a 3x3 conv (channels unchanged).

    Shapes: (B, C, H, W) -> (B, C, 2H, 2W).

    Taught in: notebooks/06_unet_mnist.ipynb.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
