r"""Training a DDPM on images: Algorithm 1 at scale, shared by the notebooks and the command line.

One function, :func:`train`, does what both need:

* **Algorithm 1** (Ho et al. 2020): x_0 from the data, t ~ U{1..T}, eps ~ N(0, I), gradient step on
  :math:`\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)\|^2`
  (eq. 14) -- the loss is :func:`edudiff.loss_simple`.
* The paper's recipe (Appendix B): Adam(W) at lr 2e-4 with a linear warm-up (5000 steps on CIFAR-10),
  gradient-norm clipping at 1, an exponential moving average (EMA) of the weights with decay 0.9999
  used for sampling, random horizontal flips on CIFAR-10, T = 1000, betas linear 1e-4 .. 0.02.
* Speed: bf16 autocast on CUDA (only there), channels-last memory format (on CUDA by default),
  optional ``torch.compile`` (off by default: ``compile=True`` / ``--compile``).
* Progress: a ``tqdm.auto`` bar showing the loss; periodic sample grids (PNG) from the EMA model;
  a ``log.jsonl`` of the loss; periodic **atomic checkpoints** (:mod:`edudiff.checkpoint`).
* **Resuming is exact**: everything random is a function of saved state. The data order of epoch e
  is a permutation drawn from a generator seeded by (seed, e), so the batch of step s is known from s;
  t, eps and the flips come from a dedicated generator whose state is saved; dropout uses the torch
  global generator, whose state is saved too (per process). On CPU, training N steps straight and
  training N/2, stopping (Ctrl-C, a killed process), and resuming to N give bit-identical weights.
  Ctrl-C (SIGINT) or SIGTERM finishes the current step, saves ``last.pt`` and stops.
* **Several GPUs**: launched with ``torchrun --nproc_per_node K -m edudiff.train ...`` the processes
  form a DDP group (NCCL on CUDA, gloo on CPU). Each step uses a global batch of K x batch_size
  images: the seeded order is dealt out to the ranks like a ``DistributedSampler`` (rank r takes
  rows r, r+K, ...), the noise of the whole global batch is drawn from the shared generator and
  sliced the same way, and gradients are averaged -- so K processes of batch B compute the same
  update as one process of batch K*B. Only rank 0 writes checkpoints, samples and logs.

The device is chosen at run time (:func:`edudiff.default_device`; never hard-coded).

Command line (``python -m edudiff.train --help``)::

    python -m edudiff.train --dataset mnist --preset mnist_small --steps 30000 --out runs/mnist
    python -m edudiff.train --dataset mnist --out runs/mnist --resume           # continue a run
    python -m edudiff.train sample --ckpt runs/mnist/last.pt --n 64 --ddim-steps 50 --out grid.png

Taught in: notebooks/06_unet_mnist.ipynb (MNIST) and notebooks/07_cifar10.ipynb (CIFAR-10).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import signal
import struct
import sys
import time
import warnings
import zlib
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint, remove_stale_temp_files, save_checkpoint
from .config import default_device, fast_mode
from .data import to_uint8
from ._validate import value_checks
from .losses import loss_simple
from .sampling import ddim_sample, sample
from .schedules import Schedule
from . import unet as _unet

__all__ = [
    "TrainConfig", "TrainResult", "TrainState", "TrainingInterrupted", "PRESETS", "DATASET_SHAPES",
    "train", "build_model", "unet_config_for", "load_model", "sample_images", "denoising_strip",
    "make_grid", "write_png", "save_image_grid", "show_images", "plot_denoising_strip",
    "ema_update", "main",
]

# ------------------------------------------------------------------------------------------------
# Presets and datasets
# ------------------------------------------------------------------------------------------------
def cifar10_tiny(**overrides) -> _unet.UNetConfig:
    """A tiny CIFAR-10 model for CI / ``EDUDIFF_FAST=1`` (32x32x3, levels 32 -> 16 -> 8,
    widths 16, 32, 32, one residual block per level, attention only in the middle, no dropout)."""
    return dataclasses.replace(_unet.cifar10_small(base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1,
                                                   attention_resolutions=(), dropout=0.0, num_groups=8),
                               **overrides)


#: Model presets by name (``--preset``); each returns a :class:`~edudiff.unet.UNetConfig`.
PRESETS: dict[str, Callable[..., _unet.UNetConfig]] = {
    "mnist_tiny": _unet.mnist_tiny,
    "mnist_small": _unet.mnist_small,
    "cifar10_tiny": cifar10_tiny,
    "cifar10_small": _unet.cifar10_small,
    "ddpm_cifar10": _unet.ddpm_cifar10,
}

#: (channels, height, width) of each dataset's images.
DATASET_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}

_DEFAULT_PRESET = {"mnist": ("mnist_small", "mnist_tiny"), "fashion_mnist": ("mnist_small", "mnist_tiny"),
                   "cifar10": ("ddpm_cifar10", "cifar10_tiny")}


def _dataset_key(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    key = {"fashionmnist": "fashion_mnist", "cifar_10": "cifar10"}.get(key, key)
    if key not in DATASET_SHAPES:
        raise ValueError(f"dataset must be one of {', '.join(DATASET_SHAPES)}; got {name!r}")
    return key


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Everything a training run depends on. Saved (as a plain dict) in every checkpoint.

    Data: ``dataset`` ("mnist", "fashion_mnist", "cifar10"), ``data_root`` (default: $EDUDIFF_DATA,
    see :func:`edudiff.data_root`), ``download``, ``limit`` (use only the first ``limit`` training
    images), ``hflip`` (random horizontal flips; None = on for CIFAR-10 only, as in the paper).

    Model: ``preset`` (a key of :data:`PRESETS`), ``unet`` (a dict of :class:`~edudiff.unet.UNetConfig`
    fields overriding the preset, e.g. ``{"dropout": 0.0}``).

    Diffusion: ``T``, ``beta_1``, ``beta_T`` (the linear schedule of sec. 4).

    Optimisation: ``steps`` (total optimizer steps), ``batch_size`` (per process), ``lr`` (peak),
    ``warmup`` (steps of linear warm-up), ``weight_decay`` (AdamW; 0 = Adam as in the paper),
    ``grad_clip`` (max gradient norm; 0 = off), ``ema_decay``.

    Output: ``out`` (run folder; None = write nothing), ``ckpt_every`` / ``sample_every`` /
    ``log_every`` (steps; 0 = never -- a checkpoint is still written at the end), ``snapshot_every``
    (also keep ``ckpt_<step>.pt`` copies every so many steps; 0 = only ``last.pt``), ``n_samples`` and
    ``sample_ddim_steps`` (periodic grids: DDIM with that many steps; 0 = Algorithm 2 with all T).

    Speed: ``device`` (None = :func:`edudiff.default_device`), ``compile``, ``channels_last``
    (None = on CUDA only), ``bf16`` (autocast, on CUDA only). ``seed`` seeds everything (:func:`train`
    re-seeds torch's global generator, which dropout draws from).
    """

    dataset: str = "mnist"
    preset: str = "mnist_small"
    unet: dict | None = None
    steps: int = 10_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 1000
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    T: int = 1000
    beta_1: float = 1e-4
    beta_T: float = 0.02
    seed: int = 0
    out: str | None = "runs/mnist"
    ckpt_every: int = 1000
    snapshot_every: int = 0
    sample_every: int = 1000
    log_every: int = 50
    n_samples: int = 64
    sample_ddim_steps: int = 50
    data_root: str | None = None
    download: bool = False
    limit: int | None = None
    hflip: bool | None = None
    device: str | None = None
    compile: bool = False
    channels_last: bool | None = None
    bf16: bool = True

    # --------------------------------------------------------------------------------------------
    @classmethod
    def recommended(cls, dataset: str = "mnist", fast: bool | None = None, **overrides) -> "TrainConfig":
        """A sensible configuration for ``dataset``; ``fast`` (default :func:`edudiff.fast_mode`) gives
        the CPU/CI-sized version. ``overrides`` replace any field.

        * MNIST / FashionMNIST, full: ``mnist_small``, 30k steps at batch 128,
          lr 2e-4 after 1000 warm-up steps, EMA 0.9995 -- about 64 epochs.
        * MNIST, fast: ``mnist_tiny``, 200 steps at batch 32, lr 1e-3, EMA 0.99.
        * CIFAR-10, full: the paper's ``ddpm_cifar10`` (35.7M parameters), 800k steps at batch 128, lr 2e-4,
          5000 warm-up steps, EMA 0.9999, flips, dropout 0.1 (Ho et al. 2020, Appendix B).
        * CIFAR-10, fast: ``cifar10_tiny``, 150 steps at batch 32, lr 1e-3, EMA 0.99.
        """
        key = _dataset_key(dataset)
        fast = fast_mode() if fast is None else bool(fast)
        if key in ("mnist", "fashion_mnist"):
            if fast:
                base = dict(preset="mnist_tiny", steps=200, batch_size=32, lr=1e-3, warmup=20, ema_decay=0.99,
                            ckpt_every=100, sample_every=0, log_every=10, n_samples=16, sample_ddim_steps=20)
            else:
                base = dict(preset="mnist_small", steps=30_000, batch_size=128, lr=2e-4, warmup=1000,
                            ema_decay=0.9995, ckpt_every=2000, sample_every=2000, log_every=50, n_samples=64,
                            sample_ddim_steps=50)
        else:
            if fast:
                base = dict(preset="cifar10_tiny", steps=150, batch_size=32, lr=1e-3, warmup=20, ema_decay=0.99,
                            ckpt_every=100, sample_every=0, log_every=10, n_samples=16, sample_ddim_steps=20)
            else:
                base = dict(preset="ddpm_cifar10", steps=800_000, batch_size=128, lr=2e-4, warmup=5000,
                            ema_decay=0.9999, ckpt_every=5000, sample_every=10_000, log_every=100, n_samples=64,
                            sample_ddim_steps=50)
        base.update(dataset=key, out=f"runs/{key}{'_fast' if fast else ''}")
        base.update(overrides)
        return cls(**base)

    def validate(self) -> "TrainConfig":
        """Raise a ValueError naming the field if a value is out of range; returns self."""
        self.dataset = _dataset_key(self.dataset)
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {self.preset!r}")
        for name in ("steps", "batch_size", "T"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("warmup", "ckpt_every", "snapshot_every", "sample_every", "log_every", "n_samples",
                     "sample_ddim_steps", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (0.0 <= float(self.ema_decay) < 1.0):
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if not float(self.grad_clip) >= 0.0:
            raise ValueError(f"grad_clip must be >= 0 (0 = no clipping), got {self.grad_clip!r}")
        if not float(self.weight_decay) >= 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise ValueError(f"limit must be a positive int (number of training images) or None, got {self.limit!r}")
        if self.sample_ddim_steps > self.T:
            raise ValueError(f"sample_ddim_steps={self.sample_ddim_steps} exceeds T={self.T}; use at most T "
                             f"(or 0 for Algorithm 2 with all T steps)")
        if self.unet is not None and not isinstance(self.unet, dict):
            raise ValueError(f"unet must be a dict of UNetConfig fields or None, got {type(self.unet).__name__}")
        unet_config_for(self)  # checks the preset against the dataset
        return self

    @property
    def use_hflip(self) -> bool:
        return (self.dataset == "cifar10") if self.hflip is None else bool(self.hflip)

    def to_dict(self) -> dict:
        """A plain dict of primitives (what the checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Rebuild from :meth:`to_dict` (unknown keys are ignored, missing ones take defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def unet_config_for(config: TrainConfig) -> _unet.UNetConfig:
    """The :class:`~edudiff.unet.UNetConfig` of a run: the preset, with ``config.unet`` overrides,
    checked against the dataset's image shape."""
    if config.preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {config.preset!r}")
    try:
        ucfg = PRESETS[config.preset](**(config.unet or {}))
    except TypeError as err:
        raise ValueError(f"unet overrides {config.unet!r} do not fit UNetConfig: {err}") from None
    C, H, W = DATASET_SHAPES[_dataset_key(config.dataset)]
    if ucfg.in_channels != C or ucfg.out_channels != C:
        raise ValueError(f"preset {config.preset!r} expects {ucfg.in_channels}-channel images but dataset "
                         f"{config.dataset!r} has {C} channels; pick a preset for it "
                         f"(e.g. --preset {' or '.join(_DEFAULT_PRESET[_dataset_key(config.dataset)])})")
    if H % ucfg.divisor or W % ucfg.divisor:
        raise ValueError(f"preset {config.preset!r} needs sizes divisible by {ucfg.divisor}, but dataset "
                         f"{config.dataset!r} has {H}x{W} images; pick a preset for it "
                         f"(e.g. --preset {' or '.join(_DEFAULT_PRESET[_dataset_key(config.dataset)])})")
    return ucfg


def build_model(config: TrainConfig | _unet.UNetConfig) -> _unet.UNet:
    """A fresh :class:`~edudiff.unet.UNet` for a run's config (or a UNetConfig), on the CPU."""
    ucfg = config if isinstance(config, _unet.UNetConfig) else unet_config_for(config)
    return _unet.UNet(ucfg)


# ------------------------------------------------------------------------------------------------
# Small pieces: seeds, EMA, the data order
# ------------------------------------------------------------------------------------------------
def _mix(*ints: int) -> int:
    """A 63-bit seed derived from a tuple of ints (stable across runs, processes and platforms)."""
    return int.from_bytes(hashlib.sha256(repr(tuple(int(i) for i in ints)).encode()).digest()[:8], "little") >> 1


def epoch_permutation(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the images in ``epoch``: a permutation (LongTensor (N,)) seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(_mix(seed, 0x0D47A, epoch))
    return torch.randperm(num_images, generator=g)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    r""":math:`\theta_{ema} \leftarrow \text{decay}\,\theta_{ema} + (1-\text{decay})\,\theta` for every
    parameter (buffers are copied)."""
    ema_p = [p for p in ema.parameters()]
    model_p = [p.detach() for p in model.parameters()]
    if hasattr(torch, "_foreach_lerp_"):
        torch._foreach_lerp_(ema_p, model_p, 1.0 - decay)
    else:  # pragma: no cover - very old torch
        for e, p in zip(ema_p, model_p):
            e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up, ``min(decay, (1 + step) / (10 + step))`` (as TensorFlow's
    ExponentialMovingAverage with ``num_updates``): early averages are not dominated by the random
    initialisation, which matters for short runs; for long runs it is ``decay``."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


def _param_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# Distributed setup
# ------------------------------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1


def _init_distributed(device_hint: str | None) -> _Dist:
    """Join the process group that ``torchrun`` describes through WORLD_SIZE/RANK/LOCAL_RANK."""
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, False)
    want_cuda = torch.cuda.is_available() and (device_hint is None or str(device_hint).startswith("cuda"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, True)


def _pick_device(config: TrainConfig, d: _Dist) -> torch.device:
    if config.device is not None:
        dev = torch.device(config.device)
    else:
        dev = default_device()
    if dev.type == "cuda" and d.enabled:
        dev = torch.device("cuda", d.local_rank)
    return dev


# ------------------------------------------------------------------------------------------------
# Stopping cleanly on Ctrl-C / SIGTERM
# ------------------------------------------------------------------------------------------------
class TrainingInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C (or SIGTERM) stopped training at a step boundary; ``checkpoint`` is the
    file saved at that step (or None when the run has no ``out``), ``step`` the step reached."""

    def __init__(self, message: str, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@contextmanager
def _stop_flag():
    """Yield a dict whose ``"stop"`` entry becomes the signal name when SIGINT/SIGTERM arrives, so
    the loop can stop between steps (a signal in the middle of ``optimizer.step()`` would otherwise
    leave half-updated weights). A second Ctrl-C interrupts at once."""
    flag = {"stop": None}
    previous = {}

    def handler(signum, frame):
        if flag["stop"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"] = signal.Signals(signum).name

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
        pass
    try:
        yield flag
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------
@dataclass
class TrainState:
    """What a ``callback`` sees after each step (return True from the callback to stop training)."""
    step: int
    model: nn.Module
    ema: nn.Module
    schedule: Schedule
    config: TrainConfig
    loss: torch.Tensor
    train_seconds: float
    rank: int
    world_size: int


@dataclass
class TrainResult:
    """What :func:`train` returns.

    ``model`` (the trained weights) and ``ema`` (their moving average: sample from this one) are
    plain :class:`~edudiff.unet.UNet` modules on the training device; ``losses`` is the loss of
    every step from step 1 (float32, on the CPU; continued across resumes); ``images_per_sec`` is
    the training throughput of this call (all processes, sampling and checkpointing excluded).
    """
    model: nn.Module
    ema: nn.Module
    schedule: Schedule
    config: TrainConfig
    unet_config: _unet.UNetConfig
    step: int
    losses: torch.Tensor
    out: Path | None
    checkpoint: Path | None
    train_seconds: float
    images_per_sec: float
    resumed_from: int | None = None
    stopped_early: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    ddp_param_digests: list | None = None


# ------------------------------------------------------------------------------------------------
# Checkpoint content
# ------------------------------------------------------------------------------------------------
_REQUIRED = ("model", "ema", "optimizer", "step", "rng", "config", "unet_config")
# Fields that must agree between a checkpoint and the config that resumes it (the rest -- steps,
# lr, intervals, ... -- may change, e.g. to train longer).
_MUST_MATCH = ("dataset", "preset", "unet", "T", "beta_1", "beta_T", "seed", "batch_size", "limit")


def _rng_state_here(device: torch.device) -> dict:
    state = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state_here(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _load_weights(model: nn.Module, weights: dict, path, key: str) -> None:
    """``model.load_state_dict(weights)``, with a CheckpointError naming the file if the shapes or names
    do not fit (a checkpoint of another model or of another version of the U-Net code)."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) or first[0] if first else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: its '{key}' weights do not fit the U-Net built from its "
                              f"configuration ({detail}). It was written by another version of edudiff.unet; "
                              f"train it again, or load it with the edudiff version that wrote it.") from err


def _resolve_resume(resume, out: Path | None) -> Path | None:
    if resume is None or resume is False:
        return None
    if resume is True:
        if out is None:
            raise ValueError("resume=True needs config.out (the run folder holding last.pt), or pass the "
                             "checkpoint path as resume=")
        return out / "last.pt"
    return Path(resume)


def _check_compatible(saved: dict, config: TrainConfig, path: Path) -> list[str]:
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs now {getattr(config, k)!r}"
             for k in _MUST_MATCH if saved.get(k) != getattr(config, k)]
    if (saved.get("hflip") if saved.get("hflip") is not None else saved.get("dataset") == "cifar10") != config.use_hflip:
        diffs.append(f"hflip: checkpoint {saved.get('hflip')!r} vs now {config.hflip!r}")
    if diffs:
        raise ValueError(f"cannot resume from {path}: the run was started with other settings "
                         f"({'; '.join(diffs)}). Fix: pass the same options as the original run, or use "
                         f"a new --out folder to start a fresh run.")
    return [f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in saved
            if k not in _MUST_MATCH and hasattr(config, k) and saved.get(k) != getattr(config, k)]


# ------------------------------------------------------------------------------------------------
# The training loop
# ------------------------------------------------------------------------------------------------
def train(config: TrainConfig, resume: bool | str | os.PathLike = False,
          callback: Callable[[TrainState], bool | None] | None = None, progress: bool = True,
          dataset=None) -> TrainResult:
    """Train a DDPM per ``config`` (see :class:`TrainConfig`) and return a :class:`TrainResult`.

    Args:
        resume: ``True`` continues from ``<out>/last.pt`` if it exists (else starts afresh, saying so);
            a path continues from that checkpoint. The checkpoint's data/model/seed settings must match
            ``config`` (``steps``, ``lr``, intervals, ... may differ, e.g. to train longer).
        callback: called after every step with a :class:`TrainState`; returning True stops the run
            (a checkpoint is saved). Its time is not counted as training time.
        progress: show a tqdm progress bar with the loss (rank 0 only).
        dataset: an already loaded :class:`edudiff.data.ImageDataset` (or a float tensor
            (N, C, H, W) in [-1, 1]) to use instead of loading ``config.dataset`` -- the shape must still
            match the dataset's.

    Raises :class:`TrainingInterrupted` (a KeyboardInterrupt) after Ctrl-C/SIGTERM, once ``last.pt``
    holds the state at the step reached; ``resume=True`` continues from there, bit-identically on CPU.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (e.g. TrainConfig.recommended('mnist')), "
                        f"got {type(config).__name__}")
    config = dataclasses.replace(config).validate()  # a private copy
    dist_info = _init_distributed(config.device)
    try:
        return _train(config, resume, callback, progress, dataset, dist_info)
    finally:
        if dist_info.initialized_here:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


def _load_images(config: TrainConfig, dataset, d: _Dist) -> torch.Tensor:
    if dataset is None:
        from .data import load_dataset
        if d.enabled and config.download:  # rank 0 downloads, the others wait and then read
            import torch.distributed as dist
            if d.rank == 0:
                load_dataset(config.dataset, root=config.data_root, train=True, download=True)
            dist.barrier()
        dataset = load_dataset(config.dataset, root=config.data_root, train=True,
                               download=config.download and d.rank == 0)
    images = dataset.images if hasattr(dataset, "images") else dataset
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError("dataset must be an ImageDataset or a float tensor (N, C, H, W) in [-1, 1]")
    if tuple(images.shape[1:]) != DATASET_SHAPES[config.dataset]:
        raise ValueError(f"dataset images have shape {tuple(images.shape[1:])}, but {config.dataset!r} "
                         f"images are {DATASET_SHAPES[config.dataset]}")
    if config.limit is not None:
        images = images[: config.limit]
    global_batch = config.batch_size * d.world
    if images.shape[0] < global_batch:
        raise ValueError(f"only {images.shape[0]} training images (limit={config.limit}) for a global batch of "
                         f"{global_batch} (batch_size={config.batch_size} x {d.world} processes); raise limit "
                         f"or lower batch_size")
    return images


def _train(config: TrainConfig, resume, callback, progress, dataset, d: _Dist) -> TrainResult:
    import torch.distributed as dist
    device = _pick_device(config, d)
    out = Path(config.out) if config.out is not None else None
    is_main = d.rank == 0
    images = _load_images(config, dataset, d)
    images = images.to(device) if device.type != "cpu" else images
    N = images.shape[0]
    C, H, W = images.shape[1:]
    GB = config.batch_size * d.world
    batches_per_epoch = N // GB

    # Model, EMA, optimizer. The initial weights come from the seed (identical on every rank).
    ucfg = unet_config_for(config)
    torch.manual_seed(_mix(config.seed, 0x1217))
    model = _unet.UNet(ucfg)
    channels_last = (device.type == "cuda") if config.channels_last is None else bool(config.channels_last)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=config.weight_decay)
    schedule = Schedule.linear(config.T, config.beta_1, config.beta_T)

    # Random sources: the noise/t/flip generator is shared by all ranks (they slice the global batch);
    # the global generator (dropout) is per rank.
    noise_gen = torch.Generator(device=device).manual_seed(_mix(config.seed, 0xE75))
    torch.manual_seed(_mix(config.seed, 0xD2, d.rank))
    if device.type == "cuda":
        torch.cuda.manual_seed(_mix(config.seed, 0xD2, d.rank))

    step, losses, resumed_from = 0, [], None
    ckpt_path = _resolve_resume(resume, out)
    if ckpt_path is not None:
        if ckpt_path.exists():
            state = load_checkpoint(ckpt_path, map_location="cpu", required=_REQUIRED)
            changed = _check_compatible(state["config"], config, ckpt_path)
            _load_weights(model, state["model"], ckpt_path, "model")
            _load_weights(ema, state["ema"], ckpt_path, "ema")
            opt.load_state_dict(state["optimizer"])
            step = resumed_from = int(state["step"])
            if state["rng"].get("noise_device", device.type) == device.type:
                noise_gen.set_state(state["rng"]["noise"])
            else:  # a CUDA generator's state does not fit a CPU one (and vice versa)
                warnings.warn(f"{ckpt_path} was written on {state['rng']['noise_device']}, this run is on {device.type}: "
                              f"the noise is re-seeded, so the result will differ from an uninterrupted run")
                noise_gen.manual_seed(_mix(config.seed, 0xE75, step))
            per_rank = state["rng"]["per_rank"]
            if len(per_rank) == d.world:
                _set_rng_state_here(per_rank[d.rank], device)
            else:
                warnings.warn(f"{ckpt_path} was written by {len(per_rank)} processes, this run has {d.world}: "
                              f"dropout masks are re-seeded, so the result will differ from an uninterrupted run")
                torch.manual_seed(_mix(config.seed, 0xD2, d.rank, step))
            losses = [state.get("losses", torch.zeros(0))[:step].float()]
            if is_main:
                print(f"resuming from {ckpt_path} at step {step}/{config.steps}"
                      + (f" (changed: {'; '.join(changed)})" if changed else ""), flush=True)
        elif resume is True:
            if is_main:
                print(f"no checkpoint at {ckpt_path}; starting a new run", flush=True)
        else:
            raise FileNotFoundError(f"checkpoint {ckpt_path} (resume=) does not exist; check the path")

    if is_main and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out)
        _trim_log(out / "log.jsonl", step)

    train_model: nn.Module = model
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        train_model = torch.compile(train_model)

    use_bf16 = config.bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else nullcontext
    hflip = config.use_hflip

    recent: list[torch.Tensor] = []
    train_seconds, images_done, last_ckpt, stopped_early = 0.0, 0, None, False
    cached_epoch, perm = -1, None

    def flush_losses():
        if recent:
            vals = torch.stack(recent).float().cpu()
            recent.clear()
            losses.append(vals)
            if not bool(torch.isfinite(vals).all()):
                bad = step - len(vals) + int(torch.nonzero(~torch.isfinite(vals))[0]) + 1
                raise FloatingPointError(
                    f"the loss became {float(vals[~torch.isfinite(vals)][0])} at step {bad}: training diverged. "
                    f"Fix: lower lr (now {config.lr}), keep grad_clip > 0 (now {config.grad_clip}), and restart "
                    f"or resume from an earlier checkpoint" + (f" in {out}" if out else ""))
            return vals
        return None

    def write_checkpoint() -> Path | None:
        all_losses = torch.cat(losses) if losses else torch.zeros(0)
        here = _rng_state_here(device)
        if d.enabled:
            per_rank = [None] * d.world
            dist.all_gather_object(per_rank, here)
        else:
            per_rank = [here]
        digests = None
        if d.enabled:  # a fingerprint of each rank's weights: DDP keeps them identical
            digests = [None] * d.world
            dist.all_gather_object(digests, _param_digest(model))
        if not (is_main and out is not None):
            return None
        state = {
            "format": "edudiff-train", "version": 1, "step": step,
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
            "rng": {"noise": noise_gen.get_state(), "noise_device": device.type, "per_rank": per_rank,
                    "data_order": {"seed": config.seed, "epoch": step // batches_per_epoch,
                                   "batch_in_epoch": step % batches_per_epoch, "num_images": N,
                                   "global_batch": GB, "world_size": d.world}},
            "config": config.to_dict(), "unet_config": dataclasses.asdict(ucfg), "losses": all_losses,
        }
        if digests is not None:
            state["ddp_param_digests"] = digests
        path = save_checkpoint(out / "last.pt", state)
        if config.snapshot_every and step % config.snapshot_every == 0:
            save_checkpoint(out / f"ckpt_{step:08d}.pt", state)
        return path

    def write_samples():
        grid_images = sample_images(ema, schedule, config.n_samples, (C, H, W),
                                    ddim_steps=config.sample_ddim_steps, seed=config.seed, device=device)
        save_image_grid(grid_images, out / "samples" / f"step_{step:08d}.png",
                        nrow=max(1, int(round(math.sqrt(config.n_samples)))))

    bar = None
    if progress and is_main and step < config.steps:
        from tqdm.auto import tqdm
        bar = tqdm(total=config.steps, initial=step, desc=f"training {config.preset} on {config.dataset}",
                   unit="step", dynamic_ncols=True)
    log_file = open(out / "log.jsonl", "a") if (is_main and out is not None) else None
    model.train()
    try:
        with _stop_flag() as flag:
            while step < config.steps:
                t0 = time.perf_counter()
                epoch, i = divmod(step, batches_per_epoch)
                if epoch != cached_epoch:
                    perm, cached_epoch = epoch_permutation(N, config.seed, epoch), epoch
                idx = perm[i * GB:(i + 1) * GB][d.rank::d.world]
                x0 = images[idx.to(images.device)] if images.device.type != "cpu" else images[idx]
                # t, eps (and flips) for the whole global batch, from the shared generator; this rank's rows.
                t = torch.randint(1, config.T + 1, (GB,), generator=noise_gen, device=device)[d.rank::d.world]
                noise = torch.randn((GB, C, H, W), generator=noise_gen, device=device)[d.rank::d.world]
                if hflip:
                    flip = (torch.rand(GB, generator=noise_gen, device=device) < 0.5)[d.rank::d.world]
                    x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
                x0 = x0.contiguous(memory_format=memory_format)
                noise = noise.contiguous(memory_format=memory_format)

                lr = config.lr * min(1.0, (step + 1) / config.warmup) if config.warmup else config.lr
                for group in opt.param_groups:
                    group["lr"] = lr
                # On a GPU, skip the per-call value checks (each one is a device sync): this batch is
                # valid by construction (images from uint8, t from randint(1, T+1)).
                with autocast(), value_checks(device.type == "cpu"):
                    loss = loss_simple(schedule, train_model, x0, t=t, noise=noise)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                ema_update(ema, model, _ema_decay_at(step, config.ema_decay))
                step += 1
                recent.append(loss.detach())
                images_done += GB
                train_seconds += time.perf_counter() - t0

                if step % max(config.log_every, 1) == 0 or step == config.steps:
                    vals = flush_losses()
                    if vals is not None and is_main:
                        mean = float(vals.mean())
                        if bar is not None:
                            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}", refresh=False)
                        if log_file is not None and config.log_every:
                            log_file.write(json.dumps({"step": step, "loss": mean, "lr": lr,
                                                       "images_per_sec": images_done / max(train_seconds, 1e-9)})
                                           + "\n")
                            log_file.flush()
                if bar is not None:
                    bar.update(1)

                stop = False
                if callback is not None:
                    flush_losses()
                    stop = bool(callback(TrainState(step, model, ema, schedule, config, loss.detach(),
                                                    train_seconds, d.rank, d.world)))
                stop = stop or bool(flag["stop"])
                if d.enabled:  # every rank must stop at the same step
                    s = torch.tensor([1.0 if stop else 0.0], device=device)
                    dist.all_reduce(s, op=dist.ReduceOp.MAX)
                    stop = bool(s.item() > 0)
                if config.ckpt_every and step % config.ckpt_every == 0 and step < config.steps and not stop:
                    flush_losses()
                    last_ckpt = write_checkpoint() or last_ckpt
                if is_main and out is not None and config.sample_every and step % config.sample_every == 0:
                    write_samples()
                if stop:
                    flush_losses()
                    last_ckpt = write_checkpoint() or last_ckpt
                    if flag["stop"]:
                        where = f"; saved {last_ckpt}, continue with resume=True / --resume" if last_ckpt else ""
                        raise TrainingInterrupted(f"training stopped by {flag['stop']} at step {step}{where}",
                                                  step, last_ckpt)
                    stopped_early = True
                    break
            else:
                flush_losses()
                last_ckpt = write_checkpoint() or last_ckpt
                if is_main and out is not None and config.sample_every and step % config.sample_every \
                        and step > (resumed_from or 0):
                    write_samples()  # a grid of the final weights too
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()

    digests = None
    if d.enabled:
        digests = [None] * d.world
        dist.all_gather_object(digests, _param_digest(model))
        if is_main:
            if len(set(digests)) == 1:
                print(f"DDP: all {d.world} processes hold identical weights", flush=True)
            else:
                warnings.warn(f"DDP: the processes' weights differ (digests {digests})")
        dist.barrier()

    all_losses = torch.cat(losses) if losses else torch.zeros(0)
    return TrainResult(model=model, ema=ema, schedule=schedule, config=config, unet_config=ucfg, step=step,
                       losses=all_losses, out=out, checkpoint=last_ckpt, train_seconds=train_seconds,
                       images_per_sec=images_done / train_seconds if train_seconds > 0 else float("nan"),
                       resumed_from=resumed_from, stopped_early=stopped_early, device=device,
                       ddp_param_digests=digests)


def _trim_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    path.write_text("".join(line + "\n" for line in keep))


# ------------------------------------------------------------------------------------------------
# Sampling and loading a trained model
# ------------------------------------------------------------------------------------------------
def load_model(path: str | os.PathLike, ema: bool = True, device=None) -> tuple[_unet.UNet, Schedule, dict]:
    """Rebuild the model of a checkpoint written by :func:`train`.

    Returns ``(model, schedule, checkpoint)``: the U-Net with the EMA weights (``ema=False``: the raw
    weights) in eval mode on ``device`` (default :func:`edudiff.default_device`), the run's noise
    schedule, and the checkpoint dict.
    """
    state = load_checkpoint(path, map_location="cpu", required=("model", "unet_config", "config"))
    try:
        ucfg = _unet.UNetConfig(**state["unet_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} holds a U-Net configuration this version cannot build ({err}); "
                              f"it was written by another version of edudiff") from err
    model = _unet.UNet(ucfg)
    key = "ema" if ema and "ema" in state else "model"
    _load_weights(model, state[key], path, key)
    cfg = state["config"]
    schedule = Schedule.linear(int(cfg.get("T", 1000)), float(cfg.get("beta_1", 1e-4)), float(cfg.get("beta_T", 0.02)))
    device = default_device() if device is None else torch.device(device)
    return model.to(device).eval(), schedule, state


@torch.no_grad()
def sample_images(model, schedule: Schedule, n: int, image_shape, ddim_steps: int | None = 50, eta: float = 0.0,
                  seed: int = 0, device=None, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """Draw ``n`` images from an eps-model; returns a float32 CPU tensor (n, C, H, W) in [-1, 1].

    ``ddim_steps``: DDIM (:func:`edudiff.ddim_sample`) with that many steps and ``eta``; 0 or None =
    Algorithm 2 (:func:`edudiff.sample`, all T steps, sigma_t^2 = beta_t). Both clip the predicted x_0
    to [-1, 1] at every step. The noise comes from a generator seeded by ``seed`` (on ``device``), so
    the same seed gives the same images; batches of ``batch_size`` keep the memory bounded.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of images), got {n!r}")
    if device is None:
        device = next(iter(model.parameters())).device if isinstance(model, nn.Module) else default_device()
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    outs = []
    for start in range(0, n, batch_size):
        shape = (min(batch_size, n - start), *tuple(image_shape))
        if ddim_steps:
            x = ddim_sample(schedule, model, shape, num_steps=int(ddim_steps), eta=eta, clip_x0=True,
                            generator=gen, device=device, progress=progress)
        else:
            x = sample(schedule, model, shape, var_type="beta", clip_x0=True, generator=gen, device=device,
                       progress=progress)
        outs.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(outs)


@torch.no_grad()
def denoising_strip(model, schedule: Schedule, image_shape, n: int = 4, num_frames: int = 8,
                    ddim_steps: int | None = None, seed: int = 0, device=None) -> tuple[torch.Tensor, list[int]]:
    """The reverse process x_T -> x_0 caught at ``num_frames`` moments, for ``n`` images.

    Runs Algorithm 2 (``ddim_steps=None``, all T steps) or DDIM with ``ddim_steps`` steps, with
    x_0 clipping, and keeps x_t at timesteps evenly spread from T down to 0. Returns ``(frames,
    timesteps)``: frames (num_frames, n, C, H, W) float32 on the CPU, clamped to [-1, 1] for display,
    and the timestep of each frame (first T, last 0). Plot with :func:`plot_denoising_strip`.
    """
    if device is None:
        device = next(iter(model.parameters())).device if isinstance(model, nn.Module) else default_device()
    device = torch.device(device)
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2 (x_T and x_0 at least), got {num_frames}")
    gen = torch.Generator(device=device).manual_seed(int(seed))
    shape = (n, *tuple(image_shape))
    if ddim_steps:
        _, traj = ddim_sample(schedule, model, shape, num_steps=int(ddim_steps), clip_x0=True, generator=gen,
                              device=device, return_trajectory=True)
    else:
        _, traj = sample(schedule, model, shape, var_type="beta", clip_x0=True, generator=gen, device=device,
                         return_trajectory=True)
    available = sorted(traj, reverse=True)                      # T, ..., 0
    picks = np.linspace(0, len(available) - 1, num_frames).round().astype(int)
    ts = [available[k] for k in picks]
    frames = torch.stack([traj[t].float().clamp(-1, 1) for t in ts])
    return frames, ts


# ------------------------------------------------------------------------------------------------
# Image grids and a tiny PNG writer (no torchvision, no PIL needed)
# ------------------------------------------------------------------------------------------------
def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images (B, C, H, W) in [-1, 1] (C = 1 or 3) into one uint8 array: (rows*(H+p)+p, nrow*(W+p)+p)
    for grey images, with a trailing 3 for colour. ``pad_value`` is the gap colour in [-1, 1] (1 = white).
    Pixels map by :func:`edudiff.data.to_uint8`; NaN (a diverged sample) shows as grey."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be a tensor (B, C, H, W) with C = 1 or 3, got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int (images per row), got {nrow!r}")
    B, C, H, W = images.shape
    x = to_uint8(images.detach().float().cpu().nan_to_num(0.0))
    ncol, nrows = min(nrow, B), math.ceil(B / nrow)
    fill = int(round((pad_value + 1.0) * 127.5))
    grid = np.full((C, nrows * (H + padding) + padding, ncol * (W + padding) + padding), fill, dtype=np.uint8)
    for k in range(B):
        r, c = divmod(k, nrow)
        top, left = padding + r * (H + padding), padding + c * (W + padding)
        grid[:, top:top + H, left:left + W] = x[k].numpy()
    return grid[0] if C == 1 else grid.transpose(1, 2, 0)


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a uint8 array (H, W) grey or (H, W, 3) RGB as a PNG file (atomically; folders created)."""
    a = np.asarray(array)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ValueError(f"array must be uint8 of shape (H, W) or (H, W, 3), got {a.dtype} {a.shape}")
    h, w = a.shape[:2]
    color_type = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\x00" + a[row].tobytes() for row in range(h))  # filter type 0 per scanline

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(png)
    os.replace(tmp, path)
    return path


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int = 8, padding: int = 2) -> Path:
    """Save images (B, C, H, W) in [-1, 1] as one PNG grid with ``nrow`` images per row."""
    return write_png(path, make_grid(images, nrow=nrow, padding=padding))


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.6):
    """Draw a grid of images (B, C, H, W) in [-1, 1] with matplotlib; returns the Axes."""
    import matplotlib.pyplot as plt
    grid = make_grid(images, nrow=nrow)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(max(2.0, scale * w / 16), max(2.0, scale * h / 16)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_denoising_strip(frames: torch.Tensor, timesteps: list[int], title: str = "reverse process x_T -> x_0"):
    """Plot :func:`denoising_strip`'s output (F, n, C, H, W): one column per frame (labelled by t), one row
    per image -- :func:`edudiff.plots.image_strip` with frames and images swapped."""
    from .plots import image_strip
    n = frames.shape[1]
    return image_strip(frames.transpose(0, 1), timesteps, row_labels=[f"sample {i + 1}" for i in range(n)],
                       title=title)


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------
_EPILOG = """examples:
  python -m edudiff.train --dataset mnist --fast --out runs/mnist_fast        # CPU, a few minutes
  python -m edudiff.train --dataset mnist --preset mnist_small --steps 30000 --out runs/mnist
  python -m edudiff.train --dataset mnist --out runs/mnist --resume           # continue after a crash
  python -m edudiff.train --dataset cifar10 --download --out runs/cifar10     # the paper's recipe
  torchrun --nproc_per_node 4 -m edudiff.train --dataset cifar10 --out runs/c10   # 4 GPUs (DDP)
  python -m edudiff.train sample --ckpt runs/mnist/last.pt --n 64 --ddim-steps 50 --out grid.png

Ctrl-C stops after the current step and saves <out>/last.pt; --resume continues exactly from there.
"""


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m edudiff.train",
        description="Train a DDPM (Ho et al. 2020) U-Net on MNIST, FashionMNIST or CIFAR-10. Options left out "
                    "take the recommended values for the dataset (see TrainConfig.recommended); --fast picks "
                    "the CPU-sized ones. Use the 'sample' subcommand to draw images from a checkpoint.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=sorted(DATASET_SHAPES), help="training data (default mnist)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="U-Net size (default: mnist_small / ddpm_cifar10; "
                   "with --fast mnist_tiny / cifar10_tiny)")
    p.add_argument("--fast", action="store_true", help="CPU/CI-sized defaults: tiny model, a few hundred steps")
    p.add_argument("--steps", type=int, help="total optimizer steps")
    p.add_argument("--batch-size", type=int, help="images per step per process")
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    p.add_argument("--warmup", type=int, help="linear learning-rate warm-up steps")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0, i.e. Adam)")
    p.add_argument("--grad-clip", type=float, help="max gradient norm, 0 = off (default 1)")
    p.add_argument("--ema-decay", type=float, help="decay of the weights' moving average")
    p.add_argument("--T", type=int, help="diffusion steps (default 1000)")
    p.add_argument("--seed", type=int, help="seed of everything random (default 0)")
    p.add_argument("--out", help="run folder for last.pt, samples/ and log.jsonl (default runs/<dataset>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                   help="continue from <out>/last.pt (or from CKPT); starts afresh if there is none")
    p.add_argument("--ckpt-every", type=int, help="save <out>/last.pt every so many steps (0 = only at the end)")
    p.add_argument("--snapshot-every", type=int, help="also keep ckpt_<step>.pt every so many steps (0 = off)")
    p.add_argument("--sample-every", type=int, help="save a sample grid every so many steps (0 = off)")
    p.add_argument("--log-every", type=int, help="log the mean loss every so many steps")
    p.add_argument("--n-samples", type=int, help="images per periodic sample grid")
    p.add_argument("--sample-ddim-steps", type=int, help="DDIM steps for the periodic grids (0 = Algorithm 2)")
    p.add_argument("--data-root", help="dataset folder (default $EDUDIFF_DATA or the repository's data/)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: on for cifar10 only)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slower start, faster steps)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory format (default: on CUDA only)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bf16 autocast on CUDA (default on; ignored elsewhere)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _sample_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m edudiff.train sample",
                                description="Draw images from a checkpoint written by edudiff.train and save a PNG grid.")
    p.add_argument("--ckpt", required=True, help="checkpoint file, e.g. runs/mnist/last.pt")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--ddim-steps", type=int, default=50,
                   help="DDIM steps (default 50); 0 = Algorithm 2 with all T steps")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    p.add_argument("--out", default="samples.png", help="PNG file to write (default samples.png)")
    p.add_argument("--nrow", type=int, help="images per row (default: about sqrt(n))")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their EMA")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--save-tensor", help="also save the images as a .pt tensor (values in [-1, 1])")
    return p


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    mapping = {"preset": "preset", "steps": "steps", "batch_size": "batch_size", "lr": "lr", "warmup": "warmup",
               "weight_decay": "weight_decay", "grad_clip": "grad_clip", "ema_decay": "ema_decay", "T": "T",
               "seed": "seed", "out": "out", "ckpt_every": "ckpt_every", "snapshot_every": "snapshot_every",
               "sample_every": "sample_every", "log_every": "log_every", "n_samples": "n_samples",
               "sample_ddim_steps": "sample_ddim_steps", "data_root": "data_root", "limit": "limit",
               "hflip": "hflip", "device": "device", "channels_last": "channels_last"}
    overrides = {field_: getattr(args, a) for a, field_ in mapping.items() if getattr(args, a) is not None}
    overrides.update(download=args.download, compile=args.compile, bf16=args.bf16)
    return TrainConfig.recommended(args.dataset, fast=args.fast, **overrides)


def _main_sample(argv: list[str]) -> int:
    parser = _sample_parser()
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    model, schedule, state = load_model(args.ckpt, ema=not args.no_ema, device=args.device)
    if args.ddim_steps < 0 or args.ddim_steps > schedule.T:
        parser.error(f"--ddim-steps must lie in 0..T={schedule.T}, got {args.ddim_steps}")
    cfg = model.config
    shape = (cfg.in_channels, *DATASET_SHAPES[_dataset_key(state["config"].get("dataset", "mnist"))][1:])
    t0 = time.perf_counter()
    x = sample_images(model, schedule, args.n, shape, ddim_steps=args.ddim_steps, eta=args.eta, seed=args.seed,
                      progress=True)
    nrow = args.nrow or max(1, int(round(math.sqrt(args.n))))
    path = save_image_grid(x, args.out, nrow=nrow)
    if args.save_tensor:
        Path(args.save_tensor).parent.mkdir(parents=True, exist_ok=True)
        torch.save(x, args.save_tensor)
    how = f"DDIM, {args.ddim_steps} steps" if args.ddim_steps else f"Algorithm 2, {schedule.T} steps"
    print(f"wrote {args.n} samples ({how}, {'EMA' if not args.no_ema else 'raw'} weights of step "
          f"{state.get('step')}) to {path} in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m edudiff.train`` (and the ``edudiff-train`` script). Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["sample"]:
            return _main_sample(argv[1:])
        if argv[:1] == ["train"]:
            argv = argv[1:]
        args = _train_parser().parse_args(argv)
        config = _config_from_args(args)
        config.validate()
        rank0 = int(os.environ.get("RANK", "0")) == 0
        if rank0:
            print(f"edudiff.train: {config.preset} on {config.dataset}, {config.steps} steps at batch "
                  f"{config.batch_size}, lr {config.lr}, out={config.out}", flush=True)
        result = train(config, resume=args.resume, progress=not args.quiet)
        if rank0:
            print(f"done: step {result.step}, final loss {float(result.losses[-50:].mean()):.4f}, "
                  f"{result.images_per_sec:.1f} images/s on {result.device}"
                  + (f", checkpoint {result.checkpoint}" if result.checkpoint else ""), flush=True)
        return 0
    except TrainingInterrupted as err:
        print(f"\nedudiff.train: {err}", file=sys.stderr, flush=True)
        return 130
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        # Includes CheckpointError and the dataset errors; their messages name the file/argument and the fix.
        print(f"edudiff.train: error: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
