"""Saving and loading training checkpoints, safely.

* :func:`save_checkpoint` writes **atomically**: the bytes go to a temporary file in the same folder,
  which is flushed and ``fsync``-ed and then renamed over the target with ``os.replace`` (an atomic
  rename on POSIX and Windows). A crash, a full disk or a Ctrl-C in the middle of a save leaves the
  previous checkpoint untouched; there is never a half-written ``last.pt``.
* :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)``: only tensors, numbers,
  strings, lists, tuples and dicts are unpickled, so a checkpoint file cannot run code when loaded.
  A truncated, corrupted or foreign file raises :class:`CheckpointError` naming the file and the fix.

What a training checkpoint holds (see :mod:`edudiff.train`) -- all of it ``weights_only``-safe:
``model`` / ``ema`` (state dicts), ``optimizer`` (state dict), ``step``, ``rng`` (the torch CPU
generator state, the CUDA states if any, the state of the noise/timestep generator and the
description of the data order), ``config`` (the :class:`~edudiff.train.TrainConfig` as a plain dict)
and ``unet_config`` (the :class:`~edudiff.unet.UNetConfig` as a plain dict).

Taught in: notebooks/06_unet_mnist.ipynb (training, resuming).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import torch

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "TMP_PREFIX", "remove_stale_temp_files"]

#: Temporary files are named ``.<target name>.<random>.tmp`` next to the target.
TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be used (truncated, corrupted, not a checkpoint, or missing
    an entry). The message names the file and the fix."""


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` (a dict of tensors, numbers, strings, lists and dicts) to ``path`` atomically.

    The data goes to a temporary file in ``path``'s folder (created if needed), is flushed and
    fsync-ed, and only then renamed onto ``path`` with ``os.replace``. If anything fails on the way,
    the temporary file is removed, ``path`` keeps its previous content, and the error propagates.
    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (e.g. {{'model': model.state_dict(), 'step': 10}}), "
                        f"got {type(state).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name next to the target; opened with "xb" (never overwrite; permissions follow the umask).
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}"
    try:
        with open(tmp, "xb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temp_files(folder: str | os.PathLike, name: str = "") -> list[Path]:
    """Delete temporary files that an interrupted :func:`save_checkpoint` (e.g. a killed process)
    left in ``folder`` -- those named ``.<name>*.tmp``. Returns the paths removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.glob(f"{TMP_PREFIX}{name}*{_TMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _earlier_checkpoints(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob("*.pt") if p != path and not p.name.startswith(TMP_PREFIX))


def _fix_text(path: Path) -> str:
    earlier = _earlier_checkpoints(path)
    hint = (f" (found in the same folder: {', '.join(p.name for p in earlier[-3:])})" if earlier
            else " (no other checkpoint is in the same folder)")
    return (f"Fix: delete {path} and start again, or resume from an earlier checkpoint{hint}, "
            f"e.g. `python -m edudiff.train ... --resume <earlier.pt>`.")


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
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the path (a run saves "
                                f"<out>/last.pt), or train first with `python -m edudiff.train --out <out>`")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file; pass the .pt file inside it "
                              f"(e.g. {path / 'last.pt'})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, random bytes, a pickled class, ...: many error types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if len(reason) > 300:
            reason = reason[:300] + " ..."
        raise CheckpointError(f"checkpoint {path} is not readable: it is truncated, corrupted or not a "
                              f"weights-only torch checkpoint ({type(err).__name__}: {reason}). "
                              f"{_fix_text(path)}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of training "
                              f"state; it is not a checkpoint that edudiff wrote. {_fix_text(path)}")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing} (it has {sorted(state)}); "
                              f"it was not written by edudiff.train or is from another version. "
                              f"{_fix_text(path)}")
    return state
