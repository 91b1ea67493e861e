"""Argument checks shared by the package: each error names the argument and says the fix."""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager

import torch

_value_checks = True


@contextmanager
def value_checks(enabled: bool):
    """Turn the checks that read data values (NaN/inf in data, t within 1..T) on or off inside a block.

    Shape, dtype and type checks always run. Value checks read a result back from the device, which
    on a GPU is a synchronisation per call; a training loop whose batches are valid by construction
    (uint8 images, t from ``randint(1, T+1)``) turns them off there.
    """
    global _value_checks
    before, _value_checks = _value_checks, bool(enabled)
    try:
        yield
    finally:
        _value_checks = before


def as_tensor_t(t, T: int, batch: int | None = None, device=None, name: str = "t") -> torch.Tensor:
    """Return ``t`` as a LongTensor of shape (B,) with every value in 1..T.

    ``t`` may be a LongTensor of shape (B,) or a Python int (then broadcast to ``batch`` rows).
    Convention: t runs 1..T as in Ho et al. (2020); t=0 means "no noise" and is not a step.
    """
    if isinstance(t, bool):
        raise TypeError(f"{name} must be an integer timestep or a LongTensor of shape (B,), got a bool")
    if isinstance(t, int):
        if batch is None:
            raise TypeError(f"{name} is a Python int but the batch size is unknown; pass a LongTensor of shape (B,)")
        t = torch.full((batch,), t, dtype=torch.long, device=device)
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a LongTensor of shape (B,) (or an int), got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.dtype.is_complex:
        raise TypeError(f"{name} must hold integer timesteps (torch.long), got dtype {t.dtype}; use t.long()")
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape (B,), one timestep per batch row; got shape {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        raise ValueError(
            f"{name} has {t.shape[0]} entries but the data has batch size {batch}; give one timestep per row"
        )
    if _value_checks and t.numel() and (int(t.min()) < 1 or int(t.max()) > T):
        raise ValueError(
            f"{name} must lie in 1..T={T} (t runs 1..T as in the paper; 0 means no noise); "
            f"got values in [{int(t.min())}, {int(t.max())}]"
        )
    return t.long()


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise if ``x`` is not a tensor or holds NaN/inf."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have a batch dimension, shape (B, ...); got a scalar")
    if _value_checks and x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf; clean the data (e.g. torch.nan_to_num) before diffusing")
    return x


def check_same_shape(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have identical shapes."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; they must match"
        )


def check_positive_int(value, name: str, minimum: int = 1, fix: str = "") -> int:
    """Return ``value`` if it is an int (Python or numpy; not a bool) >= ``minimum``; else a ValueError naming ``name``.

    ``minimum=0`` checks a count that may be zero ("an int >= 0"); ``fix`` is appended to the message.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}" + (f" {fix}" if fix else ""))
    return value


def check_nonnegative_number(value, name: str, meaning: str) -> float:
    """``float(value)`` if it is a Python int or float (not a bool), finite and >= 0; else a TypeError or ValueError
    naming ``name``, with ``meaning`` (what the values mean, e.g. "0 = none") in the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number ({meaning}), got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0 ({meaning}), got {v}")
    return v


def renamed_argument(value, old_value, new: str, old: str):
    """Support an argument's old name for a while: return ``value``, or ``old_value`` (with a
    DeprecationWarning) when only the old name was given; a TypeError when both were."""
    if old_value is None:
        return value
    if value is not None:
        raise TypeError(f"give {new}= only; {old}= is its old name")
    import warnings

    warnings.warn(f"the argument {old}= is now called {new}=", DeprecationWarning, stacklevel=3)
    return old_value
