"""The small pieces of a training run: seeds, the data order, the EMA, stopping on a signal, the progress
bar, and what :func:`edudiff.training.train` hands back.

Taught in: notebooks/06_unet_mnist.ipynb (EMA, resuming) and notebooks/07_cifar10.ipynb.
"""

from __future__ import annotations

import hashlib
import json
import signal
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data import DATASET_SHAPES, load_dataset
from ..nn.unet_config import UNetConfig
from ..schedules import Schedule
from ..utils import atomic_write, progress_bar

__all__ = [
    "SEED_MODEL_INIT",
    "SEED_NOISE",
    "SEED_DROPOUT",
    "SEED_DATA_ORDER",
    "derive_seed",
    "epoch_permutation",
    "ema_update",
    "ema_decay_at",
    "TrainingInterrupted",
    "stop_on_signals",
    "TrainState",
    "TrainResult",
    "TrainProgress",
    "budget_ends_first",
    "trim_log",
]

# Each random stream of a run has its own seed, derived from (config.seed, stream, ...) by derive_seed.
SEED_MODEL_INIT = 0x1217  # the initial weights
SEED_NOISE = 0xE75  # t, eps and the flips (shared by all ranks)
SEED_DROPOUT = 0xD2  # torch's global generator, per rank (dropout)
SEED_DATA_ORDER = 0x0D47A  # the permutation of each epoch


def derive_seed(*ints: int) -> int:
    """A 63-bit seed derived from a tuple of ints (stable across runs, processes and platforms)."""
    return int.from_bytes(hashlib.sha256(repr(tuple(int(i) for i in ints)).encode()).digest()[:8], "little") >> 1


def epoch_permutation(num_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the images in ``epoch``: a permutation (LongTensor (N,)) seeded by (seed, epoch)."""
    g = torch.Generator().manual_seed(derive_seed(seed, SEED_DATA_ORDER, epoch))
    return torch.randperm(num_images, generator=g)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    r""":math:`\theta_{ema} \leftarrow \text{decay}\,\theta_{ema} + (1-\text{decay})\,\theta` for every
    parameter (buffers are copied)."""
    ema_params = list(ema.parameters())
    model_params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, model_params, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def drop_labels(
    y: torch.Tensor, p: float, null_label: int, generator: torch.Generator, batch: int, rank: int = 0, world: int = 1
) -> torch.Tensor:
    """Label dropout (Ho & Salimans 2022, Algorithm 1, line 3: "c <- null with probability p_uncond"): each of
    this rank's labels ``y`` replaced by ``null_label`` with probability ``p``. The coins are drawn for the whole
    global batch of ``batch`` rows from ``generator`` (shared by all ranks), of which this rank keeps
    ``[rank::world]``, so the dropped rows do not depend on the number of processes."""
    drop = (torch.rand(batch, generator=generator, device=generator.device) < p)[rank::world].to(y.device)
    return torch.where(drop, torch.full_like(y, null_label), y)


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up, ``min(decay, (1 + step) / (10 + step))`` (as TensorFlow's
    ExponentialMovingAverage with ``num_updates``): early averages are not dominated by the random
    initialisation, which matters for short runs; for long runs it is ``decay``."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C (or SIGTERM) stopped training at a step boundary; ``checkpoint`` is the
    file saved at that step (or None when the run has no ``out``), ``step`` the step reached."""

    def __init__(self, message: str, step: int, checkpoint: Path | None):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@contextmanager
def stop_on_signals():
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


@dataclass
class TrainState:
    """What a ``callback`` sees after each step (return True from the callback to stop training)."""

    step: int
    model: nn.Module
    ema: nn.Module
    schedule: Schedule
    config: object
    loss: torch.Tensor
    train_seconds: float
    rank: int
    world_size: int


@dataclass
class TrainResult:
    """What :func:`edudiff.training.train` returns.

    ``model`` (the trained weights) and ``ema`` (their moving average: sample from this one) are
    plain :class:`~edudiff.nn.UNet` modules on the training device; ``losses`` is the loss of
    every step from step 1 (float32, on the CPU; continued across resumes); ``images_per_sec`` is
    the training throughput of this call (all processes, sampling and checkpointing excluded).
    ``stop_reason``: None (all steps done), "callback", "time budget" or "another process" (DDP).
    """

    model: nn.Module
    ema: nn.Module
    schedule: Schedule
    config: object
    unet_config: UNetConfig
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
    stop_reason: str | None = None


def budget_ends_first(steps_left: int, seconds_per_step: float, seconds_left: float) -> bool:
    """True when a time budget with ``seconds_left`` runs out before ``steps_left`` steps are done."""
    return steps_left * seconds_per_step > seconds_left


class TrainProgress:
    """The progress bar of a run, with an ETA: it counts steps, or -- once the time budget (``minutes``)
    will end the run before the last step -- seconds of that budget. ``enabled=False``: no bar."""

    def __init__(self, enabled: bool, config, step: int, desc: str):
        self.budget = None if config.minutes is None else 60.0 * config.minutes
        self.steps, self.first_step, self.by_time = config.steps, step, False
        self.bar = progress_bar(None, enabled, total=config.steps, initial=step, desc=desc, unit="step")

    def set_postfix(self, **values) -> None:
        if self.bar is not None:
            self.bar.set_postfix(refresh=False, **values)

    def update(self, step: int, seconds: float) -> None:
        """After each step: ``step`` reached, ``seconds`` of training in this call."""
        if self.bar is None:
            return
        done = step - self.first_step
        if (
            self.budget is not None
            and not self.by_time
            and done >= 3
            and budget_ends_first(self.steps - step, seconds / done, self.budget - seconds)
        ):
            self.by_time = True
            self.bar.reset(total=round(self.budget))
            self.bar.unit = "s"
        if self.by_time:
            self.bar.n = min(round(seconds), round(self.budget))
            self.bar.refresh()
        else:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def load_training_images(config, dist, device: torch.device, dataset=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels)`` of a run: the training images (N, C, H, W) in [-1, 1] and, for a class-conditional
    run (``config.num_classes``), their labels (N,) int64 (else None). They come from ``dataset`` (an
    ImageDataset, or a tensor of images for an unconditional run) or ``config.dataset`` loaded (under DDP rank 0
    downloads first), checked and cut to ``config.limit``."""
    if dataset is None:
        if dist.enabled and config.download:  # rank 0 downloads, the others wait and then read
            from torch import distributed as torch_dist

            if dist.is_main:
                load_dataset(config.dataset, root=config.data_root, train=True, download=True)
            torch_dist.barrier()
        dataset = load_dataset(
            config.dataset, root=config.data_root, train=True, download=config.download and dist.is_main
        )
    images = dataset.images if hasattr(dataset, "images") else dataset
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError("dataset must be an ImageDataset or a float tensor (N, C, H, W) in [-1, 1]")
    if tuple(images.shape[1:]) != DATASET_SHAPES[config.dataset]:
        raise ValueError(
            f"dataset images have shape {tuple(images.shape[1:])}, but {config.dataset!r} "
            f"images are {DATASET_SHAPES[config.dataset]}"
        )
    labels = _training_labels(config, dataset, images.shape[0])
    if config.limit is not None:
        images = images[: config.limit]
        labels = labels[: config.limit] if labels is not None else None
    global_batch = config.batch_size * dist.world
    if images.shape[0] < global_batch:
        raise ValueError(
            f"only {images.shape[0]} training images (limit={config.limit}) for a global batch "
            f"of {global_batch} (batch_size={config.batch_size} x {dist.world} processes); raise "
            f"limit or lower batch_size"
        )
    if device.type != "cpu":
        images, labels = images.to(device), (labels.to(device) if labels is not None else None)
    return images, labels


def _training_labels(config, dataset, n: int) -> torch.Tensor | None:
    """The labels of a class-conditional run, checked against ``config.num_classes``; None if unconditional."""
    if config.num_classes is None:
        return None
    labels = getattr(dataset, "labels", None)
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,):
        raise ValueError(
            "a class-conditional run (num_classes is set) needs labels: pass an ImageDataset (images and labels), "
            "not a bare image tensor, or set num_classes=None"
        )
    labels = labels.long()
    if n and (int(labels.min()) < 0 or int(labels.max()) >= config.num_classes):
        raise ValueError(
            f"dataset labels span {int(labels.min())}..{int(labels.max())}, outside 0..{config.num_classes - 1} "
            f"(num_classes={config.num_classes})"
        )
    return labels


def autocast_context(device: torch.device, bf16: bool | None):
    """bf16 autocast: None = on CUDA (where supported) only; True = also on the CPU; False = off."""
    kind = device.type
    if bf16 is not False and kind == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if bf16 is True and kind == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def trim_log(path: Path, step: int) -> None:
    """Drop the lines of a ``log.jsonl`` past ``step`` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write(path, "".join(line + "\n" for line in keep).encode(), fsync=False)
