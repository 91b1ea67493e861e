"""Image grids and a tiny PNG writer (no torchvision, no PIL needed).

Taught in: notebooks/06_unet_mnist.ipynb (sample grids of a training run).
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .._validate import check_positive_int
from ..data import to_uint8
from ..utils import atomic_write

__all__ = ["make_grid", "write_png", "save_image_grid"]


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images (B, C, H, W) in [-1, 1] (C = 1 or 3) into one uint8 array: (rows*(H+p)+p, nrow*(W+p)+p)
    for grey images, with a trailing 3 for colour. ``pad_value`` is the gap colour in [-1, 1] (1 = white).
    Pixels map by :func:`edudiff.data.to_uint8`; NaN (a diverged sample) shows as grey."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor (B, C, H, W) with C = 1 or 3, got {got}")
    check_positive_int(nrow, "nrow", fix="(images per row)")
    batch, channels, height, width = images.shape
    pixels = to_uint8(images.detach().float().cpu().nan_to_num(0.0))
    ncol, nrows = min(nrow, batch), math.ceil(batch / nrow)
    fill = int(round((pad_value + 1.0) * 127.5))
    grid = np.full(
        (channels, nrows * (height + padding) + padding, ncol * (width + padding) + padding), fill, dtype=np.uint8
    )
    for k in range(batch):
        row, col = divmod(k, nrow)
        top, left = padding + row * (height + padding), padding + col * (width + padding)
        grid[:, top : top + height, left : left + width] = pixels[k].numpy()
    return grid[0] if channels == 1 else grid.transpose(1, 2, 0)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array (H, W) grey or (H, W, 3) RGB as a PNG file (atomically; folders created)."""
    a = np.asarray(array)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"array must be uint8 of shape (H, W) or (H, W, 3), got {a.dtype} {a.shape}")
    height, width = a.shape[:2]
    color_type = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\x00" + a[row].tobytes() for row in range(height))  # filter type 0 per scanline
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )
    return atomic_write(path, png, fsync=False)


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8, padding: int = 2) -> Path:
    """Save images (B, C, H, W) in [-1, 1] as one PNG grid with ``nrow`` images per row."""
    return write_png(path, make_grid(images, nrow=nrow, padding=padding))
