r"""Helpers for the check cells of the course's exercises (student-facing, small on purpose).

* :func:`check_close` compares a student's answer with the expected value and, when they differ,
  raises an ``AssertionError`` that says which input failed, expected vs got, and the formula to revisit.
* :class:`references_blocked` runs the student's code with edudiff's own implementations of the
  exercise switched off, so that a function which merely calls (or *is*) the reference fails::

      want = q_sample(schedule, x0, t, eps=eps)            # the expected value, computed BEFORE the block
      with references_blocked(q_sample):
          got = my_q_sample(schedule, x0, t, eps)          # edudiff's q_sample raises inside the block
      check_close("my_q_sample(...)", got, want, hint="eq. 4")

  Inside the block every place that holds a blocked function — the attributes of every loaded
  ``edudiff`` module (so ``edudiff.q_sample``, ``edudiff.forward.q_sample`` and the copies other edudiff
  modules imported) and every name in the notebook's namespace bound to it (``q_sample``, or
  ``my_q_sample = q_sample``) — is replaced by a stub that raises :class:`ReferenceUsed`, an
  ``AssertionError`` whose message names the function. Everything is restored on exit.
* :func:`check_own_work` fails at once when the student's function *is* a reference (or keeps one in a
  default argument or closure).

Taught in: the homework cells of notebooks 01-07 (see the README's "Homework" section).
"""

from __future__ import annotations

import sys
import types

import numpy as np

__all__ = ["check_close", "references_blocked", "check_own_work", "ReferenceUsed", "INTEGRITY_MESSAGE"]

#: The phrase every integrity failure contains (tests and graders look for it).
INTEGRITY_MESSAGE = "write it yourself"


class ReferenceUsed(AssertionError):
    """Raised when a student's function calls (or is) an edudiff reference inside :class:`references_blocked`."""


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


def _label(fn) -> str:
    module = getattr(fn, "__module__", None) or "edudiff"
    if module.startswith("edudiff.") and module.count(".") == 1 and hasattr(sys.modules.get("edudiff"), fn.__name__):
        module = "edudiff"  # exported at the top level: say edudiff.q_sample, as the notebooks import it
    return f"{module}.{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"


def _expand(targets) -> list:
    """Functions/classes to block: the targets themselves, or for a module its public functions."""
    out = []
    for target in targets:
        if isinstance(target, types.ModuleType):
            names = getattr(target, "__all__", [n for n in vars(target) if not n.startswith("_")])
            out += [
                getattr(target, n)
                for n in names
                if callable(getattr(target, n, None))
                and getattr(getattr(target, n), "__module__", None) == target.__name__
            ]
        elif callable(target):
            out.append(target)
        else:
            raise TypeError(f"references_blocked takes edudiff functions or modules; got {target!r}")
    return out


def _blocker(fn, label: str):
    def blocked(*args, **kwargs):
        __tracebackhide__ = True
        raise ReferenceUsed(
            f"your function called {label} (or is it) — {INTEGRITY_MESSAGE}: this exercise "
            f"asks you to implement it, so the check switches edudiff's version off while your "
            f"code runs. Use the tables of `schedule` and torch operations instead."
        )

    blocked.__name__ = getattr(fn, "__name__", "blocked")
    blocked.__wrapped_reference__ = fn
    return blocked


class references_blocked:
    """Context manager: inside it, the given edudiff references raise :class:`ReferenceUsed`.

    ``references_blocked(q_sample, q_step)`` or ``references_blocked(edudiff.forward)`` (a module: all
    its public functions). ``namespace`` is the dict of names the student's code sees; by default the
    globals of the code that opens the block (the notebook). Every attribute of a loaded ``edudiff*``
    module and every namespace entry that *is* a blocked function is swapped for a raising stub and
    put back on exit, even when the block raises.
    """

    def __init__(self, *references, namespace: dict | None = None):
        if not references:
            raise TypeError("references_blocked needs at least one edudiff function or module to block")
        self.references = _expand(references)
        self.namespace = sys._getframe(1).f_globals if namespace is None else namespace
        self._saved: list[tuple[object, str, object]] = []

    def _holders(self):
        holders = [
            (m, vars(m))
            for name, m in list(sys.modules.items())
            if m is not None and (name == "edudiff" or name.startswith("edudiff."))
        ]
        return holders + [(None, self.namespace)]

    def __enter__(self):
        stubs = {id(fn): _blocker(fn, _label(fn)) for fn in self.references}
        for owner, table in self._holders():
            for key, value in list(table.items()):
                stub = stubs.get(id(value))
                if stub is not None:
                    self._saved.append((owner if owner is not None else table, key, value))
                    if owner is None:
                        table[key] = stub
                    else:
                        setattr(owner, key, stub)
        return self

    def __exit__(self, *exc):
        for holder, key, value in reversed(self._saved):
            if isinstance(holder, dict):
                holder[key] = value
            else:
                setattr(holder, key, value)
        self._saved.clear()
        return False


def check_own_work(name: str, fn, *references) -> None:
    """Fail with a clear message if the student's ``fn`` is one of ``references`` (``my_f = q_sample``),
    or holds one in a default argument or closure (``def my_f(..., f=q_sample)``)."""
    __tracebackhide__ = True
    refs = _expand(references)
    ids = {id(r) for r in refs}
    if id(fn) in ids:
        raise ReferenceUsed(
            f"{name} is {_label(fn)} itself — {INTEGRITY_MESSAGE}: define it with `def` "
            f"and compute the answer in its body."
        )
    held = list(getattr(fn, "__defaults__", None) or ()) + list((getattr(fn, "__kwdefaults__", None) or {}).values())
    held += [c.cell_contents for c in (getattr(fn, "__closure__", None) or ()) if _filled(c)]
    for value in held:
        if id(value) in ids:
            raise ReferenceUsed(f"{name} keeps {_label(value)} in a default argument or closure — {INTEGRITY_MESSAGE}.")


def _filled(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty closure cell
        return False
    return True
