"""Several processes, one run: the DDP set-up that ``torchrun`` describes, and what the ranks must agree on.

Launched with ``torchrun --nproc_per_node K -m edudiff train ...`` the processes form a DDP group (NCCL
on CUDA, gloo on CPU). Each step uses a global batch of K x batch_size images: the seeded order is dealt
out to the ranks like a ``DistributedSampler`` (rank r takes rows r, r+K, ...), the noise of the whole
global batch is drawn from a shared generator and sliced the same way, and gradients are averaged -- so
K processes of batch B compute the same update as one process of batch K*B. Only rank 0 writes.

Taught in: notebooks/07_cifar10.ipynb (what several GPUs buy).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..config import default_device

__all__ = [
    "DistInfo",
    "init_distributed",
    "close_distributed",
    "pick_device",
    "all_gather",
    "any_rank",
    "check_same_weights",
    "param_digest",
]


@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world`` processes, its ``local_rank`` on the machine, and
    whether :func:`init_distributed` created the process group (then :func:`close_distributed` ends it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_hint: str | None) -> DistInfo:
    """Join the process group that ``torchrun`` describes through WORLD_SIZE/RANK/LOCAL_RANK."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, False)
    want_cuda = torch.cuda.is_available() and (device_hint is None or str(device_hint).startswith("cuda"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, True)


def close_distributed(info: DistInfo) -> None:
    """End the process group if :func:`init_distributed` started it."""
    import torch.distributed as dist

    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(device: str | None, info: DistInfo) -> torch.device:
    """``device`` (default :func:`edudiff.default_device`); under DDP on CUDA, this rank's GPU."""
    dev = default_device() if device is None else torch.device(device)
    if dev.type == "cuda" and info.enabled:
        dev = torch.device("cuda", info.local_rank)
    return dev


def all_gather(value, info: DistInfo) -> list:
    """``[value of rank 0, value of rank 1, ...]`` (any picklable value); ``[value]`` in one process."""
    if not info.enabled:
        return [value]
    import torch.distributed as dist

    gathered = [None] * info.world
    dist.all_gather_object(gathered, value)
    return gathered


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (so all ranks stop at the same step)."""
    if not info.enabled:
        return bool(flag)
    import torch.distributed as dist

    s = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(s, op=dist.ReduceOp.MAX)
    return bool(s.item() > 0)


def check_same_weights(model: nn.Module, info: DistInfo) -> list[str] | None:
    """Under DDP: every rank's :func:`param_digest`, with a line saying whether they agree (rank 0) and a
    barrier after; None in one process."""
    if not info.enabled:
        return None
    import torch.distributed as dist

    digests = all_gather(param_digest(model), info)
    if info.is_main:
        if len(set(digests)) == 1:
            print(f"DDP: all {info.world} processes hold identical weights", flush=True)
        else:
            warnings.warn(f"DDP: the processes' weights differ (digests {digests})", stacklevel=2)
    dist.barrier()
    return digests


def param_digest(model: nn.Module) -> str:
    """A fingerprint (sha256) of a model's weights: DDP keeps them identical on every rank."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()
