"""What a training run saves, and how a run resumes from it: the training state in a checkpoint.

:func:`training_state` builds the dict that :func:`edudiff.nn.checkpoint.save_checkpoint` writes; a resumed run
reads it back with :func:`check_compatible` (the settings that must not change), :func:`restore_rng` (every random
stream, so resuming is bit-exact on a CPU) and :func:`resolve_resume`. The file format itself, and loading a trained
model, live in :mod:`edudiff.nn.checkpoint`.

Taught in: notebooks/06_unet_mnist.ipynb (training, resuming).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import torch
from torch import nn

from ..nn.checkpoint import FORMAT, VERSION
from ..nn.unet_config import UNetConfig
from ..schedules import Schedule
from .parts import SEED_DROPOUT, SEED_NOISE

__all__ = [
    "REQUIRED_KEYS",
    "MUST_MATCH",
    "training_state",
    "rng_state_here",
    "set_rng_state_here",
    "restore_rng",
    "resolve_resume",
    "check_compatible",
]

#: Keys a checkpoint must hold to resume training from it.
REQUIRED_KEYS = ("model", "ema", "optimizer", "step", "rng", "config", "unet_config")


#: Config fields that must agree between a checkpoint and the config that resumes it (the rest -- steps,
#: lr, intervals, ... -- may change, e.g. to train longer).
MUST_MATCH = (
    "dataset",
    "preset",
    "unet",
    "num_classes",
    "T",
    "beta_1",
    "beta_T",
    "noise_schedule",
    "seed",
    "batch_size",
    "limit",
)


#: What a checkpoint written before a :data:`MUST_MATCH` field existed was trained with.
_MUST_MATCH_BEFORE_THE_FIELD = {"noise_schedule": "linear", "num_classes": None}


def training_state(
    *,
    step: int,
    model: nn.Module,
    ema: nn.Module,
    optimizer,
    schedule: Schedule,
    config: dict,
    unet_config: UNetConfig,
    rng: dict,
    losses: torch.Tensor,
    train_seconds: float,
    ddp_param_digests: list | None = None,
) -> dict:
    """The checkpoint dict of a training run at ``step`` (see the module docstring for the keys)."""
    state = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "config": dict(config),
        "unet_config": dataclasses.asdict(unet_config),
        "betas": schedule.betas[1:].clone(),
        "losses": losses,
        "train_seconds": float(train_seconds),
    }
    if ddp_param_digests is not None:
        state["ddp_param_digests"] = ddp_param_digests
    return state


def rng_state_here(device: torch.device) -> dict:
    """This process's torch generator states: the CPU one, and the CUDA one of ``device`` if on CUDA."""
    state = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state_here(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state_here` saved."""
    torch.set_rng_state(state["torch_cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def restore_rng(
    rng: dict, noise_gen: torch.Generator, rank: int, world: int, device: torch.device, path, reseed
) -> None:
    """Restore the random state a checkpoint saved (``rng``): the shared noise generator and this rank's
    torch generators. Where the saved state cannot fit -- written on another device type, or by another
    number of processes -- re-seed with ``reseed(stream, ...)`` instead and warn that the run will differ
    from an uninterrupted one."""
    if rng.get("noise_device", device.type) == device.type:
        noise_gen.set_state(rng["noise"])
    else:  # a CUDA generator's state does not fit a CPU one (and vice versa)
        warnings.warn(
            f"{path} was written on {rng['noise_device']}, this run is on {device.type}: the noise is "
            f"re-seeded, so the result will differ from an uninterrupted run",
            stacklevel=3,
        )
        noise_gen.manual_seed(reseed(SEED_NOISE))
    per_rank = rng["per_rank"]
    if len(per_rank) == world:
        set_rng_state_here(per_rank[rank], device)
    else:
        warnings.warn(
            f"{path} was written by {len(per_rank)} processes, this run has {world}: dropout masks are "
            f"re-seeded, so the result will differ from an uninterrupted run",
            stacklevel=3,
        )
        torch.manual_seed(reseed(SEED_DROPOUT, rank))


def resolve_resume(resume, out: Path | None) -> Path | None:
    """The checkpoint that ``resume`` names: None (False/None), ``<out>/last.pt`` (True), or the path given."""
    if resume is None or resume is False:
        return None
    if resume is True:
        if out is None:
            raise ValueError(
                "resume=True needs config.out (the run folder holding last.pt), or pass the checkpoint path as resume="
            )
        return out / "last.pt"
    return Path(resume)


def check_compatible(saved: dict, config, path: Path) -> list[str]:
    """Raise a ValueError unless the saved config and ``config`` agree on :data:`MUST_MATCH` (and flips);
    return the other fields that changed, as ``"name: old -> new"`` strings."""
    saved = {**_MUST_MATCH_BEFORE_THE_FIELD, **saved}
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r} vs now {getattr(config, k)!r}"
        for k in MUST_MATCH
        if saved.get(k) != getattr(config, k)
    ]
    saved_hflip = saved.get("hflip") if saved.get("hflip") is not None else saved.get("dataset") == "cifar10"
    if saved_hflip != config.use_hflip:
        diffs.append(f"hflip: checkpoint {saved.get('hflip')!r} vs now {config.hflip!r}")
    if diffs:
        raise ValueError(
            f"cannot resume from {path}: the run was started with other settings "
            f"({'; '.join(diffs)}). Fix: pass the same options as the original run, or use "
            f"a new --out folder to start a fresh run."
        )
    # Read the saved config as the config class reads it, so that fields added since (absent from an older
    # checkpoint, hence at their defaults) are compared too.
    before = type(config).from_dict(saved)
    return [
        f"{f.name}: {getattr(before, f.name)!r} -> {getattr(config, f.name)!r}"
        for f in dataclasses.fields(config)
        if f.name not in MUST_MATCH and getattr(before, f.name) != getattr(config, f.name)
    ]
