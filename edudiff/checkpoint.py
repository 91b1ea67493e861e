"""Training checkpoints: the format, saving and loading them safely, resuming, and rebuilding a model.

* :func:`save_checkpoint` writes **atomically** (:func:`edudiff.utils.atomic_write`): the bytes go to a
  temporary file in the same folder, which is flushed and ``fsync``-ed and then renamed over the target
  with ``os.replace``. A crash, a full disk or a Ctrl-C in the middle of a save leaves the previous
  checkpoint untouched; there is never a half-written ``last.pt``.
* :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)``: only tensors, numbers,
  strings, lists, tuples and dicts are unpickled, so a checkpoint file cannot run code when loaded.
  A truncated, corrupted or foreign file raises :class:`CheckpointError` naming the file and the fix.
* :func:`load_model` rebuilds the U-Net and **the schedule it was trained with** from a checkpoint.

What a training checkpoint holds (written by :func:`training_state`) -- all of it ``weights_only``-safe:
``format`` ("edudiff-train"), ``version`` (2), ``step``, ``model`` / ``ema`` (state dicts),
``optimizer`` (state dict), ``rng`` (the torch CPU generator state per rank, the CUDA states if any,
the state of the noise/timestep generator and the description of the data order), ``config`` (the
:class:`~edudiff.train.TrainConfig` as a plain dict), ``unet_config`` (the
:class:`~edudiff.unet.UNetConfig` as a plain dict), ``betas`` (the schedule's beta_1..beta_T, float64,
shape (T,)), ``losses`` (float32 (step,)), ``train_seconds`` (training time of all calls so far) and,
under DDP, ``ddp_param_digests``. Version 1 (before ``betas``) still loads: its schedule is rebuilt
from the saved config's T, beta_1 and beta_T, with a note.

Taught in: notebooks/06_unet_mnist.ipynb (training, resuming).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .config import default_device
from .schedules import Schedule
from .unet import UNet, UNetConfig
from .utils import TMP_PREFIX, TMP_SUFFIX, atomic_write

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "TMP_PREFIX",
    "remove_stale_temp_files",
    "FORMAT",
    "VERSION",
    "REQUIRED_KEYS",
    "MUST_MATCH",
    "training_state",
    "rng_state_here",
    "set_rng_state_here",
    "restore_rng",
    "load_weights",
    "resolve_resume",
    "check_compatible",
    "schedule_from_checkpoint",
    "load_model",
]

FORMAT, VERSION = "edudiff-train", 2
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


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used (truncated, corrupted, not a checkpoint, or missing
    an entry). The message names the file and the fix."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (a dict of tensors, numbers, strings, lists and dicts) to ``path`` atomically.

    The data goes to a temporary file in ``path``'s folder (created if needed), is flushed and
    fsync-ed, and only then renamed onto ``path`` with ``os.replace``. If anything fails on the way,
    the temporary file is removed, ``path`` keeps its previous content, and the error propagates.
    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(state, dict):
        raise TypeError(
            f"state must be a dict (e.g. {{'model': model.state_dict(), 'step': 10}}), got {type(state).__name__}"
        )
    return atomic_write(path, lambda f: torch.save(state, f))


def remove_stale_temp_files(folder: str | os.PathLike, name: str = "") -> list[Path]:
    """Delete temporary files that an interrupted :func:`save_checkpoint` (e.g. a killed process)
    left in ``folder`` -- those named ``.<name>*.tmp``. Returns the paths removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.glob(f"{TMP_PREFIX}{name}*{TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _earlier_checkpoints(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob("*.pt") if p != path and not p.name.startswith(TMP_PREFIX))


def _fix_text(path: Path) -> str:
    earlier = _earlier_checkpoints(path)
    hint = (
        f" (found in the same folder: {', '.join(p.name for p in earlier[-3:])})"
        if earlier
        else " (no other checkpoint is in the same folder)"
    )
    return (
        f"Fix: delete {path} and start again, or resume from an earlier checkpoint{hint}, "
        f"e.g. `python -m edudiff train ... --resume <earlier.pt>`."
    )


def load_checkpoint(path: str | os.PathLike, map_location="cpu", required: tuple[str, ...] = ()) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    ``map_location`` defaults to ``"cpu"`` (move tensors where you need them). ``required`` lists
    keys the checkpoint must hold (e.g. ``("model", "step")``).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        CheckpointError: the file is truncated, corrupted, not a checkpoint (not a dict saved by
            ``torch.save``), holds objects that are not weights-only safe, or lacks a required key.
            The message names the file and says how to recover.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; check the path (a run saves "
            f"<out>/last.pt), or train first with `python -m edudiff train --out <out>`"
        )
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {path} is a folder, not a file; pass the .pt file inside it (e.g. {path / 'last.pt'})"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, random bytes, a pickled class, ...: many error types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if len(reason) > 300:
            reason = reason[:300] + " ..."
        raise CheckpointError(
            f"checkpoint {path} is not readable: it is truncated, corrupted or not a "
            f"weights-only torch checkpoint ({type(err).__name__}: {reason}). "
            f"{_fix_text(path)}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a dict of training "
            f"state; it is not a checkpoint that edudiff wrote. {_fix_text(path)}"
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks the entries {missing} (it has {sorted(state)}); "
            f"it was not written by edudiff's training or is from another version. "
            f"{_fix_text(path)}"
        )
    return state


# ------------------------------------------------------------------------------------------------
# The training state: what a run saves, and how a run resumes from it
# ------------------------------------------------------------------------------------------------
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
    from .train_parts import SEED_DROPOUT, SEED_NOISE

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


def load_weights(model: nn.Module, weights: dict, path, key: str) -> None:
    """``model.load_state_dict(weights)``, with a CheckpointError naming the file if the shapes or names
    do not fit (a checkpoint of another model or of another version of the U-Net code)."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as err:
        lines = str(err).strip().splitlines()
        detail = ("; ".join(line.strip() for line in lines[1:3]) or lines[0]) if lines else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path}: its '{key}' weights do not fit the U-Net built from its "
            f"configuration ({detail}). It was written by another version of edudiff.unet; "
            f"train it again, or load it with the edudiff version that wrote it."
        ) from err


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


# ------------------------------------------------------------------------------------------------
# Loading a trained model
# ------------------------------------------------------------------------------------------------
def schedule_from_checkpoint(state: dict, path="checkpoint") -> Schedule:
    """The noise schedule a checkpoint was trained with: its ``betas`` (float64, t = 1..T); for a version-1
    checkpoint without them, the linear schedule of its config's T, beta_1 and beta_T (with a note)."""
    if "betas" in state:
        return Schedule(state["betas"])
    cfg = state.get("config", {})
    missing = [k for k in ("T", "beta_1", "beta_T") if k not in cfg]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} holds no schedule (no 'betas') and its config lacks {missing}; "
            f"the schedule it was trained with is unknown. Train it again with this version."
        )
    warnings.warn(
        f"checkpoint {path} predates stored schedules (no 'betas'); rebuilding the linear schedule "
        f"from its config: T={cfg['T']}, beta_1={cfg['beta_1']}, beta_T={cfg['beta_T']}",
        stacklevel=3,
    )
    return Schedule.linear(int(cfg["T"]), float(cfg["beta_1"]), float(cfg["beta_T"]))


def load_model(path: str | os.PathLike, ema: bool = True, device=None) -> tuple[UNet, Schedule, dict]:
    """Rebuild the model of a checkpoint written by :func:`edudiff.train.train`.

    Returns ``(model, schedule, checkpoint)``: the U-Net with the EMA weights (``ema=False``: the raw
    weights) in eval mode on ``device`` (default :func:`edudiff.default_device`), the noise schedule the
    model was trained with (:func:`schedule_from_checkpoint`), and the checkpoint dict.
    """
    state = load_checkpoint(path, map_location="cpu", required=("model", "unet_config", "config"))
    try:
        unet_config = UNetConfig(**state["unet_config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} holds a U-Net configuration this version cannot build ({err}); "
            f"it was written by another version of edudiff"
        ) from err
    model = UNet(unet_config)
    key = "ema" if ema and "ema" in state else "model"
    load_weights(model, state[key], path, key)
    schedule = schedule_from_checkpoint(state, path)
    device = default_device() if device is None else torch.device(device)
    return model.to(device).eval(), schedule, state
