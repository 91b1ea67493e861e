"""A lint for the notebooks' checks: an ``assert`` must test course code.

An assert whose inputs are all literals, or values computed in the same cell without any call into the course's
code, cannot fail for a reason that matters: ``assert 1 / 20 < frac < 1 / 3`` on constants typed a line above, or a
recursion compared with its own closed form. This test finds such asserts statically (``ast``), in every committed
notebook, and in fixture cells that show what it accepts and rejects.

The rule. Walk the cells in order, remembering which notebook-level names hold *course values*: names imported
from ``edudiff``, names assigned from an expression that contains a *course call*, functions whose body contains one,
and the functions of exercise cells (the student's code is the code under test). A course call is a call of a course
name (``q_step(...)``, ``edudiff.q_sample(...)``), or a method call one attribute deep on a course value
(``mix.log_prob(x)``, ``model.parameters()``). Schedules and mixtures are the *given inputs* of most computations:
making one (``Schedule.linear(1000)``) is not a course call, and reading its tables (``sched.betas.numpy()``) reads an
input. An assert passes when the expressions it depends on -- followed back through the assignments of its own cell
(or, inside a ``def``, of the function's body) -- contain a course call or read a course value made in an earlier cell;
an assert inside a function passes when some call of the function passes it a course value. A check that does test
a schedule's or mixture's tables against something independent says so with ``# lint: tests <what>`` on its line or
the line above. Everything else is reported with its cell and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
# Course code that makes the *given* inputs of a computation: reading a schedule's tables, a mixture's parameters, a
# dataset's images or a config's fields is not a test of course code (calling their methods is).
INPUT_MODULES = {"edudiff.toy", "edudiff.schedules"}
INPUT_MAKERS = {"Schedule", "linear_betas", "cosine_betas", "GaussianMixture"}
# A check that does test a schedule's or a mixture's tables against something independent says so on its line (or
# the line above): "# lint: tests <what>".
WAIVER = "# lint: tests "
COMMITTED = sorted((REPO / "notebooks").glob("*.ipynb"))


def _cell_tree(source: str) -> ast.Module | None:
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError:  # not Python (e.g. a student stub that does not parse): nbval reports it
        return None


def _root(node: ast.AST) -> tuple[str | None, int]:
    """The name at the bottom of an attribute/subscript/call chain and the number of attribute hops above it."""
    hops = 0
    while True:
        if isinstance(node, ast.Attribute):
            hops += 1
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Name):
            return node.id, hops
        else:
            return None, hops


def _targets(node: ast.AST) -> list[str]:
    """The names an assignment target binds (``x``, ``a, b``, ``x[i]``, ``x.attr`` -> the base name)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Tuple | ast.List):
        return [n for elt in node.elts for n in _targets(elt)]
    if isinstance(node, ast.Starred):
        return _targets(node.value)
    if isinstance(node, ast.Attribute | ast.Subscript):
        name, _ = _root(node)
        return [name] if name else []
    return []


def _assignments(body: list[ast.stmt]) -> dict[str, list[ast.AST]]:
    """name -> the expressions assigned to it anywhere in ``body`` (loops, with, if, try; not nested defs)."""
    found: dict[str, list[ast.AST]] = {}

    def add(targets, value):
        for name in targets:
            found.setdefault(name, []).append(value)

    def visit(stmts):
        for st in stmts:
            if isinstance(st, ast.Assign):
                for tgt in st.targets:
                    add(_targets(tgt), st.value)
            elif isinstance(st, ast.AugAssign | ast.AnnAssign) and st.value is not None:
                add(_targets(st.target), st.value)
                if isinstance(st, ast.AugAssign):
                    add(_targets(st.target), st.target)
            elif isinstance(st, ast.For | ast.AsyncFor):
                add(_targets(st.target), st.iter)
            elif isinstance(st, ast.With):
                for item in st.items:
                    if item.optional_vars is not None:
                        add(_targets(item.optional_vars), item.context_expr)
            elif isinstance(st, ast.Expr) and isinstance(st.value, ast.Call):
                # x.append(v), x.update(v), x.extend(v): the container takes the arguments' value
                func = st.value.func
                if isinstance(func, ast.Attribute) and func.attr in ("append", "extend", "update", "insert", "add"):
                    add(_targets(func.value), st.value)
            if not isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(st, field, None) or [])
                for handler in getattr(st, "handlers", None) or []:
                    visit(handler.body)
            for node in ast.walk(st):  # comprehension and walrus targets, wherever they are
                if isinstance(node, ast.NamedExpr):
                    add([node.target.id], node.value)
                elif isinstance(node, ast.comprehension):
                    add(_targets(node.target), node.iter)

    visit(body)
    return found


def waived(source: str, node: ast.Assert) -> bool:
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    near = lines[max(node.lineno - 2, 0) : node.end_lineno]
    return any(WAIVER in line and line.split(WAIVER, 1)[1].strip() for line in near)


class NotebookChecks:
    """Course values across the cells of one notebook, and the asserts that test none."""

    def __init__(self):
        self.course: set[str] = set()  # names bound to course values (modules, functions, results)
        self.modules: set[str] = set()  # names bound to edudiff modules: any attribute chain on them is course code
        self.makers: set[str] = set()  # course names that make given inputs: schedules, mixtures, datasets, configs
        self.inputs: set[str] = set()  # values made from them alone: reading them tests nothing
        self.made: set[str] = set()  # the objects the makers return (sched, mix): their methods do compute
        self.problems: list[tuple[int, int, str]] = []
        self.pending: list[tuple] = []  # asserts in defs that reach no course code: (cell, node, def name, params)
        self.calls: list[tuple[str, list[ast.AST]]] = []  # (function name, argument expressions) anywhere

    # ---------------------------------------------------------------- what counts as course code
    def is_maker_call(self, call: ast.Call) -> bool:
        """``Schedule.linear(1000)``, ``two_gaussians_1d()``, ``load_mnist(...)``, ``edudiff.Schedule(...)``."""
        func = call.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in self.modules:
            return func.attr in INPUT_MAKERS
        name, _ = _root(func)
        return name in self.makers

    def is_course_call(self, call: ast.Call) -> bool:
        if self.is_maker_call(call):
            return False
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in self.course
        if isinstance(func, ast.Attribute):
            name, hops = _root(func)
            if name in self.modules:
                return True
            # a method of a course value (mix.log_prob, model.parameters), not a table read (sched.betas.numpy)
            return (name in self.course or name in self.made) and hops == 1 and isinstance(func.value, ast.Name)
        return isinstance(func, ast.Call) and self.is_course_call(func)  # f(...)(...)

    def reaches_course(self, exprs: list[ast.AST], local: dict[str, list[ast.AST]], params: set[str] = frozenset()):
        """Whether the expressions, followed back through ``local`` assignments, contain a course call or read a
        course value from an earlier cell (not a given input). Returns (bool, the parameters in ``params`` reached)."""
        seen: set[str] = set()
        todo = list(exprs)
        reached_params: set[str] = set()
        while todo:
            expr = todo.pop()
            for node in ast.walk(expr):
                if isinstance(node, ast.Call) and self.is_course_call(node):
                    return True, reached_params
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in seen:
                    seen.add(node.id)
                    if node.id in params:  # (a parameter may be reassigned in the body: x = np.asarray(x))
                        reached_params.add(node.id)
                    if node.id in local:
                        todo.extend(local[node.id])
                    elif node.id in self.course and node.id not in self.makers:
                        return True, reached_params
        return False, reached_params

    def only_inputs(self, exprs: list[ast.AST], local: dict[str, list[ast.AST]]) -> bool:
        """Whether the expressions are built from given inputs alone (maker calls, inputs, plain Python) and use
        at least one of them: ``sched = schedules["linear"]``, ``T = sched.T``, ``w = data.weights.numpy()``."""
        seen: set[str] = set()
        todo = list(exprs)
        uses_input = False
        while todo:
            for node in ast.walk(todo.pop()):
                if isinstance(node, ast.Call) and self.is_maker_call(node):
                    uses_input = True
                elif isinstance(node, ast.Call) and self.is_course_call(node):
                    return False
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in seen:
                    seen.add(node.id)
                    if node.id in local:
                        todo.extend(local[node.id])
                    elif node.id in self.inputs:
                        uses_input = True
                    elif node.id in self.course and node.id not in self.makers:
                        return False
        return uses_input

    def makes_object(self, value: ast.AST) -> bool:
        """A maker's call, a dict/list/tuple of them, or an entry of a made container (``schedules["linear"]``)."""
        if isinstance(value, ast.Call):
            return self.is_maker_call(value)
        if isinstance(value, ast.Dict):
            return all(self.makes_object(v) for v in value.values)
        if isinstance(value, ast.List | ast.Tuple):
            return all(self.makes_object(v) for v in value.elts)
        if isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name):
            return value.value.id in self.made
        return False

    # ---------------------------------------------------------------- cells
    def add_cell(self, index: int, source: str, under_test: bool = False) -> None:
        """``under_test``: an exercise cell, whose functions (the student's) are the code the checks test."""
        tree = _cell_tree(source)
        if tree is None:
            return
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "edudiff":
                        bound = alias.asname or alias.name.split(".")[0]
                        self.course.add(bound)
                        self.modules.add(bound)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "edudiff":
                for alias in node.names:
                    bound = alias.asname or alias.name
                    self.course.add(bound)
                    if node.module in INPUT_MODULES or alias.name in INPUT_MAKERS:
                        self.makers.add(bound)
                    if alias.name in ("plots", "pretrained", "homework", "checks"):
                        self.modules.add(bound)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                self.calls.append((node.func.id, list(node.args) + [k.value for k in node.keywords]))
        local = _assignments(tree.body)
        defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        if under_test:
            self.course.update(d.name for d in defs)
        # classify the cell's names until nothing changes: given inputs, course results, course functions
        for name in local:  # a name assigned here means what this cell makes of it
            self.course.discard(name)
            self.inputs.discard(name)
            self.made.discard(name)
        changed = True
        while changed:
            changed = False
            for name, values in local.items():
                if name in self.course or name in self.inputs:
                    continue
                if self.only_inputs(values, local):
                    self.inputs.add(name)
                    if all(self.makes_object(v) for v in values):
                        self.made.add(name)
                    changed = True
                elif self.reaches_course(values, local)[0]:
                    self.course.add(name)
                    changed = True
            for d in defs:  # a notebook function that calls course code is course code
                if d.name not in self.course and any(
                    isinstance(n, ast.Call) and self.is_course_call(n) for n in ast.walk(d)
                ):
                    self.course.add(d.name)
                    changed = True
        # the asserts of this cell
        for node in tree.body:
            for sub in ast.walk(node):
                if (
                    isinstance(sub, ast.Assert)
                    and not self._inside_def(tree, sub)
                    and not waived(source, sub)
                    and not self.reaches_course([sub.test], local)[0]
                ):
                    self.problems.append((index, sub.lineno, ast.unparse(sub.test)))
        for d in defs:
            params = {a.arg for a in d.args.args + d.args.kwonlyargs}
            body_local = _assignments(d.body)
            for sub in ast.walk(d):
                if isinstance(sub, ast.Assert) and not waived(source, sub):
                    ok, reached = self.reaches_course([sub.test], {**local, **body_local}, params)
                    if not ok:
                        self.pending.append((index, sub, d.name, reached))

    @staticmethod
    def _inside_def(tree: ast.Module, target: ast.AST) -> bool:
        for d in ast.walk(tree):
            if isinstance(d, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and any(
                n is target for n in ast.walk(d)
            ):
                return True
        return False

    def finish(self) -> list[tuple[int, int, str]]:
        """Asserts inside functions pass when some call of the function passes a course value to a parameter
        the assert depends on."""
        for index, node, fname, reached in self.pending:
            ok = bool(reached) and any(
                called == fname and any(self.reaches_course([arg], {})[0] for arg in args)
                for called, args in self.calls
            )
            if not ok:
                self.problems.append((index, node.lineno, ast.unparse(node.test)))
        return sorted(self.problems)


def assert_problems(sources: list[str], under_test: set[int] = frozenset()) -> list[tuple[int, int, str]]:
    """(cell index, line in the cell, the assert's condition) for every assert that tests no course code;
    ``under_test``: the indices of exercise cells."""
    checks = NotebookChecks()
    for i, src in enumerate(sources):
        checks.add_cell(i, src, under_test=i in under_test)
    return checks.finish()


def notebook_problems(path: Path) -> list[tuple[int, int, str]]:
    nb = nbformat.read(path, as_version=4)
    sources = [c.source if c.cell_type == "code" else "" for c in nb.cells]
    exercises = {i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("solution")}
    return assert_problems(sources, exercises)


# ------------------------------------------------------------------------------------------------
# What the lint accepts and rejects (fixtures), then the committed notebooks


IMPORTS = (
    "import math\nimport numpy as np\nimport edudiff\nfrom edudiff import Schedule, q_step\n"
    "from edudiff.toy import two_gaussians_1d\n"
)


@pytest.mark.parametrize(
    "cell",
    [
        # literals, and arithmetic on constants typed in the cell (issue 21: 07 c7)
        "peak, rate = 312e12, 21.0\nfrac = peak / 420e12 * rate * 3600 / 800_000\nassert 1 / 20 < frac < 1 / 3",
        # a recursion compared with its closed form, reading only the schedule's tables (01 c11)
        "betas = sched.betas.numpy()\nv = [1.0]\nfor b in betas[1:]:\n    v.append((1 - b) * v[-1] + b)\n"
        "assert abs(v[-1] - 1) < 1e-3",
        # a recursion on constants inside helper functions called with literals (01 c13)
        "def it(a, b):\n    v = 2.7\n    for _ in range(100):\n        v = a * a * v + b\n    return v\n"
        "def check(a, b):\n    assert abs(it(a, b) - 1) < 1e-9\ncheck(0.99, 0.01)",
        # scipy against scipy (02 c3)
        "from scipy import stats\nx = np.linspace(-3, 3, 7)\n"
        "assert np.allclose(stats.norm.pdf(x), np.exp(-x**2 / 2) / math.sqrt(2 * math.pi))",
    ],
)
def test_lint_rejects_asserts_that_test_no_course_code(cell):
    sources = [IMPORTS, "sched = Schedule.linear(1000)\nmix = two_gaussians_1d()", cell]
    problems = assert_problems(sources)
    assert problems and all(i == 2 for i, _, _ in problems), problems


@pytest.mark.parametrize(
    "cell",
    [
        # a course function's output
        "x = q_step(sched, np.zeros(3), 5)\nassert x.shape == (3,)",
        # a method of a course object, through a local chain
        "lp = mix.log_prob(np.zeros(3))\ntotal = lp.sum()\nassert total < 0",
        # a course result from an earlier cell, and a notebook function that calls course code
        "assert abs(float(path.var()) - 1) < 0.1",
        "def simulate(n):\n    return q_step(sched, np.zeros(n), 5)\nassert simulate(4).shape == (4,)",
        # an assert in a helper, called with a course value
        "def check_var(x):\n    assert abs(x.var() - 1) < 0.1\ncheck_var(path)",
    ],
)
def test_lint_accepts_asserts_on_course_code(cell):
    sources = [IMPORTS, "sched = Schedule.linear(1000)\nmix = two_gaussians_1d()\npath = mix.sample(100)", cell]
    assert assert_problems(sources) == []


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in COMMITTED])
def test_committed_notebook_asserts_test_course_code(path):
    problems = notebook_problems(path)
    assert not problems, (
        f"{path.name}: asserts that test no course code (their inputs are literals or computed in the cell "
        "without any edudiff call) -- compare course code with something independent, or make it a plain "
        "statement (print):\n" + "\n".join(f"  cell {i}, line {line}: assert {cond}" for i, line, cond in problems)
    )
