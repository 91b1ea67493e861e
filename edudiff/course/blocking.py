r"""Switching edudiff's own implementations off while a student's function runs (the integrity half of the
check cells; :mod:`edudiff.course.checks` is what the cells import).

Blocking is by identity: the code of every blocked Python function (and of the methods of a blocked class) is
swapped for a stub that raises :class:`ReferenceUsed`, so every alias of the function object fails too. See
:mod:`edudiff.course.checks` for the whole story.

Taught in: the homework cells of notebooks 01-08 (see the README's "Homework" section).
"""

from __future__ import annotations

import importlib
import sys
import types

from ..schedules import Schedule as _Schedule  # the class itself: a block may swap the name

__all__ = [
    "references_blocked", "check_own_work", "ReferenceUsed", "INTEGRITY_MESSAGE",
    "MATH_MODULES", "math_core", "minimal_schedule", "MinimalSchedule", "SCHEDULE_TABLES",
]  # fmt: skip

#: The phrase every integrity failure contains (tests and graders look for it).
INTEGRITY_MESSAGE = "write it yourself"


class ReferenceUsed(AssertionError):
    """Raised when a student's function calls (or is) an edudiff reference inside :class:`references_blocked`."""


def _label(fn) -> str:
    module = getattr(fn, "__module__", None) or "edudiff"
    if module.startswith("edudiff.") and module.count(".") == 1 and hasattr(sys.modules.get("edudiff"), fn.__name__):
        module = "edudiff"  # exported at the top level: say edudiff.q_sample, as the notebooks import it
    return f"{module}.{getattr(fn, '__qualname__', getattr(fn, '__name__', repr(fn)))}"


def _module_members(module: types.ModuleType, private: bool) -> list:
    """The functions and classes defined in ``module`` (public ones, or all with ``private``)."""
    public = [n for n in vars(module) if not n.startswith("_")]
    names = list(vars(module)) if private else getattr(module, "__all__", public)
    out = []
    for n in names:
        value = getattr(module, n, None)
        if callable(value) and getattr(value, "__module__", None) == module.__name__ and value not in out:
            out.append(value)
    return out


def _expand(targets) -> list:
    """Functions/classes to block: the targets themselves, or for a module its public functions and classes."""
    out = []
    for target in targets:
        if isinstance(target, types.ModuleType):
            out += _module_members(target, private=False)
        elif callable(target):
            out.append(target)
        else:
            raise TypeError(f"references_blocked takes edudiff functions or modules; got {target!r}")
    return out


def _message(label: str) -> str:
    return (
        f"your function called {label} (or is it) — {INTEGRITY_MESSAGE}: this exercise "
        f"asks you to implement it, so the check switches edudiff's version off while your "
        f"code runs. Use the tables of `schedule` and torch operations instead."
    )


def _blocker(fn, label: str):
    def blocked(*args, **kwargs):
        __tracebackhide__ = True
        raise ReferenceUsed(_message(label))

    blocked.__name__ = getattr(fn, "__name__", "blocked")  # no attribute leads back to fn: it would be a way round
    return blocked


# ---- blocking by identity: swap a function's __code__ ----------------------------------------

_STUB_CODES: dict = {}


def _stub_code(code: types.CodeType, message: str) -> types.CodeType | None:
    """A code object that raises ReferenceUsed(message), with ``code``'s free variables (a function's
    ``__code__`` may only be replaced by code with as many free variables as its closure has cells).
    The stub runs with the blocked function's globals, so it reaches ReferenceUsed through ``__import__``.
    None when the free variables cannot be matched (the caller then relies on the name swap alone)."""
    key = (code.co_freevars, message)
    if key not in _STUB_CODES:
        free = code.co_freevars
        src = "def _outer():\n"
        src += "".join(f"    {v} = None\n" for v in free)
        src += "    def blocked(*args, **kwargs):\n        __tracebackhide__ = True\n"
        if free:
            src += f"        ({', '.join(free)},)\n"
        src += f"        raise __import__({__name__!r}, fromlist=['_']).ReferenceUsed({message!r})\n"
        src += "    return blocked\n"
        namespace: dict = {}
        exec(compile(src, "<references_blocked>", "exec"), namespace)  # noqa: S102 - our own generated source
        stub = namespace["_outer"]().__code__
        _STUB_CODES[key] = stub if stub.co_freevars == free else None
    return _STUB_CODES[key]


def _python_functions(target) -> list[tuple[types.FunctionType, str]]:
    """(function, label) pairs whose code a block swaps: a function (and what it wraps), or the methods
    of a class — its constructor, ``__call__`` and every public method, classmethod, staticmethod and
    property getter it defines (the helpers in ``_CLASS_HELPERS`` excepted: they compute no answer)."""
    if isinstance(target, type):
        out = []
        keep = _CLASS_HELPERS.get(f"{target.__module__}.{target.__qualname__}", ())
        for name, member in vars(target).items():
            if name in keep or (name.startswith("__") and name not in ("__init__", "__new__", "__call__")):
                continue
            for fn in (getattr(member, "__func__", None), getattr(member, "fget", None), member):
                if isinstance(fn, types.FunctionType):
                    out.append((fn, f"{_label(target)}.{name}"))
                    break
        return out
    out, fn, seen = [], target, set()
    while fn is not None and id(fn) not in seen:  # functools.wraps chains: block what is wrapped too
        seen.add(id(fn))
        if isinstance(fn, types.FunctionType):
            out.append((fn, _label(target)))
        fn = getattr(fn, "__wrapped__", None)
    return out


#: Methods of blocked classes left working: they validate or index and compute no exercise's answer.
_CLASS_HELPERS = {"edudiff.schedules.Schedule": ("check_t", "gather", "timesteps")}

#: The only tables of a schedule that a graded function may read; the rest are precomputed answers.
SCHEDULE_TABLES = ("T", "betas", "alphas", "alpha_bars")


def _schedule_class():
    return _Schedule


_DERIVED_TABLES: list[str] = []


def _derived_tables() -> list[str]:
    """The attribute names a Schedule computes beyond SCHEDULE_TABLES (found once, from a tiny schedule)."""
    if not _DERIVED_TABLES:
        tiny = _schedule_class()([0.1, 0.2, 0.3])
        _DERIVED_TABLES.extend(n for n in vars(tiny) if not n.startswith("_") and n not in SCHEDULE_TABLES)
    return _DERIVED_TABLES


def _table_message(name: str, why: str) -> str:
    return (
        f"schedule.{name} is {why} — {INTEGRITY_MESSAGE}: compute it from schedule.betas, alphas, alpha_bars "
        f"(and T), the only tables this check gives your function."
    )


class _HiddenTable:
    """A data descriptor put on Schedule while a block is open: reading the table raises, writing works."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        raise ReferenceUsed(_table_message(self.name, "a table edudiff precomputed"))

    def __set__(self, obj, value):
        obj.__dict__[self.name] = value

    def __delete__(self, obj):
        del obj.__dict__[self.name]


class references_blocked:
    """Context manager: inside it, the given edudiff references raise :class:`ReferenceUsed`.

    ``references_blocked(q_sample, q_step)``, ``references_blocked(edudiff.forward)`` (a module: its
    public functions and classes) or ``references_blocked(*math_core(allow=[...]))``. ``namespace`` is the
    dict of names the student's code sees; by default the globals of the code that opens the block.

    Blocking is by identity: each blocked Python function — and each method of a blocked class (its
    constructor, ``__call__``, public methods, class- and static methods, property getters) — gets a
    ``__code__`` that raises, so every alias of it raises too (list, dict, ``functools.partial``, an
    attribute of any object, a bound copy, a lambda or default argument that captured it). In addition
    every attribute of a loaded ``edudiff*`` module and every namespace entry that *is* a blocked function
    or class is swapped for a raising stub (this covers callables without Python code). Blocking
    ``Schedule`` hides its precomputed tables (all but :data:`SCHEDULE_TABLES`) on every schedule.
    Everything is put back on exit, even when the block raises; blocks nest.

    Compute expected values before opening the block: edudiff code that needs a blocked function
    raises inside it too.
    """

    def __init__(self, *references, namespace: dict | None = None):
        if not references:
            raise TypeError("references_blocked needs at least one edudiff function or module to block")
        self.references = _expand(references)
        self.namespace = sys._getframe(1).f_globals if namespace is None else namespace
        self._saved: list[tuple[object, str, object]] = []
        self._codes: list[tuple[types.FunctionType, types.CodeType]] = []
        self._tables: list[str] = []

    def _holders(self):
        holders = [
            (m, vars(m))
            for name, m in list(sys.modules.items())
            if m is not None and (name == "edudiff" or name.startswith("edudiff.")) and name != __name__
        ]
        return holders + [(None, self.namespace)]

    def __enter__(self):
        try:
            self._enter()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _enter(self):
        schedule_cls = _schedule_class()
        if schedule_cls in self.references:
            derived = _derived_tables()  # before Schedule's constructor is blocked
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
        for target in self.references:
            for fn, label in _python_functions(target):
                code = _stub_code(fn.__code__, _message(label))
                if code is not None:  # else (free variables that cannot be matched): the name swap above only
                    self._codes.append((fn, fn.__code__))
                    fn.__code__ = code
        if schedule_cls in self.references:
            for name in derived:
                if name not in vars(schedule_cls):
                    setattr(schedule_cls, name, _HiddenTable(name))
                    self._tables.append(name)

    def __exit__(self, *exc):
        schedule_cls = _schedule_class()
        for name in reversed(self._tables):
            delattr(schedule_cls, name)
        self._tables.clear()
        for fn, code in reversed(self._codes):
            fn.__code__ = code
        self._codes.clear()
        for holder, key, value in reversed(self._saved):
            if isinstance(holder, dict):
                holder[key] = value
            else:
                setattr(holder, key, value)
        self._saved.clear()
        return False


#: The layers of edudiff that compute DDPM's formulas: any of them could compute an exercise's answer.
#: ``math_core()`` blocks all their functions and classes, private helpers included.
MATH_MODULES = (
    "edudiff.schedules",
    "edudiff.forward",
    "edudiff.posterior",
    "edudiff.reverse",
    "edudiff.elbo",
    "edudiff.losses",
    "edudiff.sampling",
    "edudiff.guidance",
    "edudiff.inpainting",
    "edudiff.toy",
)


def math_core(*also, allow=()) -> tuple:
    """Everything a check blocks by default: the functions and classes of :data:`MATH_MODULES`, plus
    ``also`` (more functions, classes or modules, e.g. ``train_toy``), minus ``allow`` (what the exercise
    may use: functions, classes or whole modules, e.g. ``allow=[normal_kl]`` or ``allow=[edudiff.toy]``
    when the check's model is the toy's exact one). Pass the result to both helpers::

        blocked = math_core(allow=[normal_kl])
        check_own_work("my_f", my_f, *blocked)
        with references_blocked(*blocked):
            ...
    """
    out: list = []
    for name in MATH_MODULES:
        out += _module_members(importlib.import_module(name), private=True)
    out += _expand(also)
    allowed = set()
    for a in allow:
        allowed |= {id(m) for m in (_module_members(a, private=True) if isinstance(a, types.ModuleType) else [a])}
    result: list = []
    for f in out:
        if id(f) not in allowed and all(f is not g for g in result):
            result.append(f)
    return tuple(result)


class MinimalSchedule:
    """What a graded function receives instead of a :class:`~edudiff.schedules.Schedule`: ``T``,
    ``betas``, ``alphas`` and ``alpha_bars`` (copies, float64, length T+1, index 0 = no noise) and nothing
    else. Reading anything more (``posterior_variance``, ``model_log_variance``, ...) raises
    :class:`ReferenceUsed` saying which tables there are."""

    __slots__ = SCHEDULE_TABLES

    def __init__(self, schedule):
        self.T = int(schedule.T)
        self.betas = schedule.betas.detach().clone()
        self.alphas = schedule.alphas.detach().clone()
        self.alpha_bars = schedule.alpha_bars.detach().clone()

    def __len__(self) -> int:
        return self.T

    def __repr__(self) -> str:
        return f"MinimalSchedule(T={self.T}: betas, alphas, alpha_bars only)"

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ReferenceUsed(_table_message(name, "not in the minimal schedule this check passes"))


def minimal_schedule(schedule) -> MinimalSchedule:
    """``schedule`` cut down to ``T``, ``betas``, ``alphas``, ``alpha_bars``: pass it to the graded function."""
    return MinimalSchedule(schedule)


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
