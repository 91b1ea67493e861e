"""Checkpoint files: the format, saving and loading them safely, and rebuilding a trained model.

* :func:`save_checkpoint` writes **atomically** (:func:`edudiff.utils.atomic_write`): the bytes go to a
  temporary file in the same folder, which is flushed and ``fsync``-ed and then renamed over the target
  with ``os.replace``. A crash, a full disk or a Ctrl-C in the middle of a save leaves the previous
  checkpoint untouched; there is never a half-written ``last.pt``.
* :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)``: only tensors, numbers,
  strings, lists, tuples and dicts are unpickled, so a checkpoint file cannot run code when loaded.
  A truncated, corrupted or foreign file raises :class:`CheckpointError` naming the file and the fix.
* :func:`load_model` rebuilds the U-Net and **the schedule it was trained with** from a checkpoint.

What a training checkpoint holds (written by :func:`edudiff.training.resume.training_state`) -- all of it
``weights_only``-safe:
``format`` ("edudiff-train"), ``version`` (2), ``step``, ``model`` / ``ema`` (state dicts),
``optimizer`` (state dict), ``rng`` (the torch CPU generator state per rank, the CUDA states if any,
the state of the noise/timestep generator and the description of the data order), ``config`` (the
:class:`~edudiff.training.TrainConfig` as a plain dict), ``unet_config`` (the
:class:`~edudiff.nn.UNetConfig` as a plain dict), ``betas`` (the schedule's beta_1..beta_T, float64,
shape (T,)), ``losses`` (float32 (step,)), ``train_seconds`` (training time of all calls so far) and,
under DDP, ``ddp_param_digests``. Version 1 (before ``betas``) still loads: its schedule is rebuilt
from the saved config's T, beta_1 and beta_T, with a note.

Taught in: notebooks/06_unet_mnist.ipynb (training, resuming).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from ..config import default_device
from ..schedules import Schedule
from ..utils import TMP_PREFIX, TMP_SUFFIX, atomic_write
from .unet import UNet
from .unet_config import UNetConfig

__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "TMP_PREFIX",
    "remove_stale_temp_files",
    "FORMAT",
    "VERSION",
    "load_weights",
    "schedule_from_checkpoint",
    "load_model",
]

FORMAT, VERSION = "edudiff-train", 2


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


#: How every file ``torch.save`` writes begins: a zip archive (torch >= 1.6), or a pickle (the legacy format).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02\x8a\x0a")
_EXPECTED = (
    "a checkpoint written by edudiff's training (e.g. runs/mnist/last.pt, from `python -m edudiff train --out "
    "runs/mnist`) or exported by edudiff.pretrained"
)


def _is_torch_file(path: Path) -> bool:
    """Whether ``path`` begins as a file written by ``torch.save`` does (a zip archive or a legacy pickle)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return any(head.startswith(magic[: len(head)]) and len(head) == 4 for magic in _TORCH_MAGIC)


def _recovery(path: Path) -> str:
    """For a checkpoint of ours that is damaged: delete it or resume from an earlier one."""
    earlier = _earlier_checkpoints(path)
    hint = (
        f" (found in the same folder: {', '.join(p.name for p in earlier[-3:])})"
        if earlier
        else " (no other checkpoint is in the same folder)"
    )
    return (
        f"Fix: if edudiff's training wrote it, delete {path} and start again, or resume from an earlier "
        f"checkpoint{hint}, e.g. `python -m edudiff train ... --resume <earlier.pt>`."
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
    if not _is_torch_file(path):
        raise CheckpointError(
            f"{path} is not a checkpoint: it is not a file written by torch.save (neither a zip archive nor a "
            f"torch pickle). Expected {_EXPECTED}; check the path."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, a pickled class, ...: many error types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if len(reason) > 300:
            reason = reason[:300] + " ..."
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise CheckpointError(
                f"{path} is a torch file, but not a weights-only checkpoint: it holds Python objects that "
                f"torch.load(weights_only=True) refuses to run ({reason}). It was not written by edudiff; "
                f"expected {_EXPECTED}."
            ) from err
        raise CheckpointError(
            f"checkpoint {path} is not readable: it is truncated or corrupted ({type(err).__name__}: {reason}). "
            f"{_recovery(path)}"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a dict of training state; it is not a checkpoint that "
            f"edudiff wrote. Expected {_EXPECTED}."
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} lacks the entries {missing} (it has {sorted(state)[:12]}); it was not written by edudiff's "
            f"training or is from another version. Expected {_EXPECTED}."
        )
    return state


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
            f"configuration ({detail}). It was written by another version of edudiff.nn; "
            f"train it again, or load it with the edudiff version that wrote it."
        ) from err


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
    """Rebuild the model of a checkpoint written by :func:`edudiff.training.train`.

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
