"""Small helpers every module shares, each written once.

* :func:`atomic_write` -- write a file so that readers see the old content or the new, never half of it
  (checkpoints, PNG grids, dataset downloads, notebooks).
* :func:`model_device` -- the device an eps-model lives on.
* :func:`progress_bar` -- a ``tqdm.auto`` bar, or nothing when progress is off.

Taught in: notebooks/06_unet_mnist.ipynb (checkpoints and progress bars of a training run).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import torch

__all__ = ["TMP_PREFIX", "TMP_SUFFIX", "atomic_write", "model_device", "progress_bar"]

#: Temporary files are named ``.<target name>.<pid>.<random>.tmp`` next to the target.
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
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


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None], fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path`` as a :class:`~pathlib.Path`.

    ``data`` is either the bytes to write or a function that writes into the binary file object it is
    given (e.g. ``lambda f: torch.save(state, f)``). The bytes go to a temporary file
    ``.<name>.<pid>.<random>.tmp`` in ``path``'s folder (created if needed), opened with ``"xb"`` (never
    overwriting anything); it is flushed and, with ``fsync=True``, ``fsync``-ed, then renamed onto
    ``path`` with ``os.replace`` (atomic on POSIX and Windows). If anything fails on the way -- an
    exception in ``data``, a full disk, Ctrl-C -- the temporary file is removed, ``path`` keeps its
    previous content and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    try:
        with open(tmp, "xb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave the temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def model_device(model, device=None, fallback="cpu") -> torch.device:
    """The device to run ``model`` on: ``device`` if given, else the device of the model's first parameter
    (or buffer), else ``fallback`` -- for a plain function ``model(x_t, t)`` or a module without weights."""
    if device is not None:
        return torch.device(device)
    for tensors in ("parameters", "buffers"):
        first = next(iter(getattr(model, tensors, lambda: ())()), None)
        if isinstance(first, torch.Tensor):
            return first.device
    return torch.device(fallback)


def progress_bar(iterable: Iterable | None = None, enabled: bool = True, **kwargs):
    """A ``tqdm.auto`` progress bar over ``iterable`` (or a manual one, ``iterable=None``, driven by ``update``).

    With ``enabled=False`` there is no bar: the iterable itself comes back (or None). ``kwargs`` go to tqdm
    (``desc``, ``total``, ``unit``, ``leave``, ...); ``dynamic_ncols`` is on by default.
    """
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
