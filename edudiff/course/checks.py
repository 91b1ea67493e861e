r"""Helpers for the check cells of the course's exercises (student-facing, small on purpose).

* :func:`check_close` compares a student's answer with the expected value and, when they differ,
  raises an ``AssertionError`` that says which input failed, expected vs got, and the formula to revisit.
* :class:`references_blocked` runs the student's code with edudiff's own implementations of the
  exercise switched off, so that a function which merely calls (or *is*) the reference fails::

      want = q_sample(schedule, x0, t, eps=eps)            # the expected value, computed BEFORE the block
      with references_blocked(q_sample):
          got = my_q_sample(schedule, x0, t, eps)          # edudiff's q_sample raises inside the block
      check_close("my_q_sample(...)", got, want, hint="eq. 4")

  Blocking is by identity: the code of every blocked Python function (and of the methods of a
  blocked class) is swapped for a stub that raises :class:`ReferenceUsed`, an ``AssertionError`` whose
  message names the function, so every alias of the function object fails too — a list or dict entry,
  ``functools.partial``, an attribute of any object, a bound copy, a lambda that captured it earlier.
  Names are swapped as well (attributes of loaded ``edudiff`` modules, the notebook's namespace), which
  also covers callables without Python code. Blocking ``Schedule`` also hides its precomputed tables
  (everything but ``T``, ``betas``, ``alphas``, ``alpha_bars``) on every schedule. Restored on exit.
* :func:`math_core` lists everything in :data:`MATH_MODULES` (the layers that could compute an
  exercise's answer) except what the exercise may use: ``references_blocked(*math_core(allow=[normal_kl]))``.
* :func:`minimal_schedule` is the schedule a graded function receives: ``T``, ``betas``, ``alphas`` and
  ``alpha_bars`` only, so the precomputed tables are not there to read.
* :func:`check_own_work` fails at once when the student's function *is* a reference (or keeps one in a
  default argument or closure).

The blocking machinery lives in :mod:`edudiff.course.blocking`; its names are exported here, where the check cells
import them.

Taught in: the homework cells of notebooks 01-08 (see the README's "Homework" section).
"""

from __future__ import annotations

import numpy as np

from .blocking import (
    INTEGRITY_MESSAGE,
    MATH_MODULES,
    SCHEDULE_TABLES,
    MinimalSchedule,
    ReferenceUsed,
    check_own_work,
    math_core,
    minimal_schedule,
    references_blocked,
)

__all__ = [
    "check_close", "references_blocked", "check_own_work", "ReferenceUsed", "INTEGRITY_MESSAGE",
    "MATH_MODULES", "math_core", "minimal_schedule", "MinimalSchedule", "SCHEDULE_TABLES",
]  # fmt: skip


def _as_array(value, name: str, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (no torch import needed here)
        value = value.detach().cpu().double().numpy()
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(
            f"{name}: {what} should be a number, array or tensor, but it is a {type(value).__name__}"
        ) from None


def check_close(name: str, got, expected, hint: str = "", atol: float = 1e-6, rtol: float = 1e-5) -> None:
    r"""Assert that the student's answer ``got`` matches ``expected`` elementwise, with a friendly hint.

    Args:
        name: which input is checked, e.g. ``"q_sample(x0, t=5, noise)"``; starts the message.
        got: the student's value (tensor, array or number), or a zero-argument callable computing it.
            With a callable, a ``NotImplementedError`` (the stub) comes out as a NotImplementedError
            that says "you haven't written it yet" instead of a traceback.
        expected: the reference value, same shape as ``got`` (compute it outside
            :class:`references_blocked`).
        hint: the formula to revisit (paper eq. number) and the likely mistake.
        atol, rtol: pass when ``|got - expected| <= atol + rtol * |expected|`` everywhere, as in
            numpy.isclose; NaN never passes. The defaults suit float32 against float64 references.

    Raises AssertionError naming ``name``, the shape mismatch or the worst element (index,
    expected, got, how many elements are off) and the hint. Returns None when all is close.
    """
    __tracebackhide__ = True  # pytest / IPython debugger: hide this frame
    tail = f"\n  Hint: {hint}" if hint else ""
    if callable(got):
        try:
            got = got()
        except NotImplementedError as err:
            raise NotImplementedError(
                f"{name}: you haven't written it yet ({err}). Fill in the exercise "
                f"cell above, run it, then run this check again."
            ) from None
    if got is None:
        raise AssertionError(f"{name}: got None. Did you forget the `return` line?{tail}")
    g, e = _as_array(got, name, "your answer"), _as_array(expected, name, "the expected value")
    if g.shape != e.shape:
        raise AssertionError(
            f"{name}: your answer has shape {g.shape} but the expected value has shape "
            f"{e.shape}. Check broadcasting (e.g. a (B,) table needs .view(-1, 1, ...) "
            f"against x of shape (B, ...)).{tail}"
        )
    excess = np.abs(g - e) - (atol + rtol * np.abs(e))
    excess = np.where(np.isnan(excess), np.inf, excess)  # NaN never passes
    bad = int((excess > 0).sum())
    if bad == 0:
        return
    if g.ndim == 0:
        raise AssertionError(
            f"{name}: expected {e.item():.6g}, got {g.item():.6g} "
            f"(allowed difference {atol:g} + {rtol:g}*|expected|).{tail}"
        )
    worst = np.unravel_index(int(np.argmax(excess)), g.shape)
    raise AssertionError(
        f"{name}: {bad} of {g.size} entries are off. Worst at index {tuple(map(int, worst))}: "
        f"expected {e[worst]:.6g}, got {g[worst]:.6g} "
        f"(allowed difference {atol:g} + {rtol:g}*|expected|).{tail}"
    )


# --------------------------------------------------------------------------------------------
# Homework integrity
