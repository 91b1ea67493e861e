r"""Homework workflow for instructors: check the markers, write student versions, grade submissions.

The course notebooks mark their exercises with nbgrader's markers, so the same notebooks also work
with ``nbgrader generate_assignment``. In a code cell::

    def q_sample_mine(schedule, x0, t, noise):
        ### BEGIN SOLUTION
        ab = schedule.alpha_bars[t].view(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        ### END SOLUTION

The student version replaces each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region (markers
included) by one line, indented like the BEGIN line, so the ``def`` above still parses::

        raise NotImplementedError("Exercise <grade_id> in <notebook>: write your solution here")

In markdown cells the region becomes nbgrader's ``YOUR ANSWER HERE``. Regions between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed (``grade`` puts them back).
Outputs and execution counts are cleared; notebook and cell metadata are kept. Markers must sit
alone on their line (indentation allowed), be balanced and never nested; a notebook that breaks
this is refused, with file, cell index (0-based, as in ``nb.cells``), line (1-based) and the fix.

Command line (``python -m edudiff.homework --help``)::

    python -m edudiff.homework check notebooks/                        # validate markers only
    python -m edudiff.homework student notebooks/ build/student/       # write student versions
    python -m edudiff.homework grade submitted.ipynb --source notebooks/02_closed_form_jump.ipynb

Check cells compare the student's function with edudiff's on seeded inputs; :func:`check_close`
gives the student a hint (which input, expected vs got, the formula to revisit) instead of a
traceback. The property "the student version fails exactly in the exercises" is nbgrader's
``validate --invert``; tests/test_homework.py checks it for every notebook in notebooks/.

Taught in: the homework cells of notebooks 01-05 (see the README's "Homework" section).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np

__all__ = ["check_close", "check_notebook", "nbgrader_warnings", "student_version", "write_student_versions",
           "read_notebook", "grade", "format_report", "execute", "cell_errors", "solution_cells",
           "exercise_checks", "CheckResult", "MarkerError", "Problem"]

SOLUTION, HIDDEN = "SOLUTION", "HIDDEN TESTS"
MARKERS = {f"### BEGIN {SOLUTION}": ("begin", SOLUTION), f"### END {SOLUTION}": ("end", SOLUTION),
           f"### BEGIN {HIDDEN}": ("begin", HIDDEN), f"### END {HIDDEN}": ("end", HIDDEN)}
# nbgrader treats ANY line containing one of these phrases as a marker, so we refuse near misses.
_PHRASES = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
TEXT_STUB = "YOUR ANSWER HERE"  # nbgrader's stub for written (markdown) answers


# --------------------------------------------------------------------------------------------
# Markers


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a notebook: where (file, cell index, line), what, and how to fix it."""
    path: str
    cell: int
    line: int | None
    what: str
    fix: str
    grade_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}, cell {self.cell}"
        if self.grade_id:
            where += f" (grade_id {self.grade_id!r})"
        if self.line is not None:
            where += f", line {self.line}"
        return f"{where}: {self.what}\n    fix: {self.fix}"


class MarkerError(ValueError):
    """Raised for notebooks whose markers are broken; ``.problems`` lists every one found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _grade_id(cell) -> str | None:
    return _nbgrader(cell).get("grade_id") or None


def _regions(source: str) -> tuple[list[tuple[str, int, int]], tuple[int, str, str] | None]:
    """Parse one cell's markers. Returns ``(regions, problem)``: regions as (kind, begin, end)
    0-based line numbers, and the first problem as (0-based line, what, fix) or None."""
    regions, open_kind, open_line = [], None, 0
    for n, line in enumerate(source.split("\n")):
        marker = MARKERS.get(line.strip())
        if marker is None:
            if any(p in line for p in _PHRASES):
                return regions, (n, f"{line.strip()!r} is not a marker line, but nbgrader would read it as one",
                                 "put the marker alone on its line, exactly '### BEGIN SOLUTION' (or END, "
                                 "or HIDDEN TESTS), or reword the text so it does not contain the phrase")
            continue
        action, kind = marker
        if action == "begin" and open_kind is not None:
            return regions, (n, f"'### BEGIN {kind}' inside the {open_kind} region opened at line {open_line + 1}"
                                f" (regions cannot be nested)",
                             f"end the first region with '### END {open_kind}' before this line, or delete one "
                             f"of the two BEGIN lines")
        if action == "begin":
            open_kind, open_line = kind, n
        elif open_kind is None:
            return regions, (n, f"'### END {kind}' without a '### BEGIN {kind}' above it",
                             f"add '### BEGIN {kind}' on its own line where the region starts, or delete this line")
        elif open_kind != kind:
            return regions, (n, f"'### END {kind}' inside the {open_kind} region opened at line {open_line + 1}",
                             f"close that region with '### END {open_kind}' first; regions cannot be nested")
        else:
            regions.append((kind, open_line, n))
            open_kind = None
    if open_kind is not None:
        return regions, (open_line, f"'### BEGIN {open_kind}' has no matching '### END {open_kind}'",
                         f"add '### END {open_kind}' on its own line after the last line of the region")
    return regions, None


def _kinds(cell) -> set[str]:
    """The kinds of region (SOLUTION, HIDDEN TESTS) in a cell."""
    return {kind for kind, _, _ in _regions(cell.source)[0]}


def check_notebook(nb, path: str = "<notebook>") -> list[Problem]:
    """Every marker problem in ``nb`` (empty list = valid): unbalanced, nested, END without BEGIN,
    or a line that nbgrader would take for a marker but is not exactly one."""
    problems = []
    for i, cell in enumerate(nb.cells):
        _, problem = _regions(cell.source)
        if problem is not None:
            line, what, fix = problem
            problems.append(Problem(path, i, line + 1, what, fix, _grade_id(cell)))
    return problems


def nbgrader_warnings(nb, path: str = "<notebook>") -> list[Problem]:
    """Metadata that ``nbgrader generate_assignment`` would reject or treat differently from us.
    Not needed by our own tools, but the course promises nbgrader compatibility."""
    warnings, seen = [], {}
    for i, cell in enumerate(nb.cells):
        meta, gid = _nbgrader(cell), _grade_id(cell)
        kinds = _kinds(cell)
        if SOLUTION in kinds and not meta.get("solution"):
            warnings.append(Problem(path, i, None, "solution region in a cell without nbgrader metadata "
                                    "solution: true (nbgrader refuses it)",
                                    'set cell metadata {"nbgrader": {"solution": true, "grade": false, '
                                    '"locked": false, "grade_id": "...", "schema_version": 3, "task": false}}', gid))
        if HIDDEN in kinds and not meta.get("grade"):
            warnings.append(Problem(path, i, None, "hidden-test region in a cell without nbgrader metadata "
                                    "grade: true (nbgrader refuses it)",
                                    'set cell metadata {"nbgrader": {"grade": true, "solution": false, "locked": '
                                    'true, "points": 1, "grade_id": "...", "schema_version": 3, "task": false}}', gid))
        if meta.get("solution") and SOLUTION not in kinds:
            warnings.append(Problem(path, i, None, "nbgrader solution cell without '### BEGIN SOLUTION' markers: "
                                    "nbgrader replaces the whole cell with its stub, we keep it",
                                    "add the markers around the solution lines, or set solution: false", gid))
        if meta.get("solution") and cell.cell_type == "markdown" and not meta.get("grade"):
            warnings.append(Problem(path, i, None, "markdown solution cell that is not a grade cell "
                                    "(nbgrader refuses it)", 'add "grade": true and "points" to its metadata', gid))
        if (meta.get("solution") or meta.get("grade")) and not gid:
            warnings.append(Problem(path, i, None, "nbgrader cell without a grade_id",
                                    "add a unique grade_id to the cell's nbgrader metadata"))
        if gid in seen:
            warnings.append(Problem(path, i, None, f"grade_id {gid!r} already used by cell {seen[gid]}",
                                    "give every nbgrader cell a unique grade_id", gid))
        if gid:
            seen.setdefault(gid, i)
    return warnings


# --------------------------------------------------------------------------------------------
# Student versions


def _stub(cell, index: int, name: str) -> str:
    if cell.cell_type != "code":
        return TEXT_STUB
    label = _grade_id(cell) or f"at cell {index}"
    return f"raise NotImplementedError({json.dumps(f'Exercise {label} in {name}: write your solution here')})"


def student_version(nb, name: str = "<notebook>"):
    """A copy of ``nb`` with solutions replaced by stubs, hidden tests removed and outputs cleared.
    ``name`` (the notebook's file name) goes into the stubs and error messages.
    Raises :class:`MarkerError` if the markers are broken."""
    problems = check_notebook(nb, name)
    if problems:
        raise MarkerError(problems)
    out = copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        lines, regions = cell.source.split("\n"), _regions(cell.source)[0]
        starts = {begin: (kind, end) for kind, begin, end in regions}
        new, n = [], 0
        while n < len(lines):
            if n in starts:
                kind, end = starts[n]
                if kind == SOLUTION:  # the stub takes the BEGIN line's indentation, like nbgrader
                    indent = lines[n][: len(lines[n]) - len(lines[n].lstrip())]
                    new.append(indent + _stub(cell, i, name))
                n = end + 1
            else:
                new.append(lines[n])
                n += 1
        cell.source = "\n".join(new)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        for key in ("execution", "collapsed", "scrolled"):  # run-time state, like nbconvert's ClearOutput
            cell.metadata.pop(key, None)
    return out


def read_notebook(path: str | os.PathLike):
    """Read a notebook. Missing cell ids (nbformat >= 4.5) get deterministic ids ``cell-<index>``
    instead of nbformat's random ones, so that the output of ``student`` is reproducible."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as a notebook ({err}); is it a .ipynb file?") from None
    if data.get("nbformat") == 4 and data.get("nbformat_minor", 0) >= 5:
        for i, cell in enumerate(data.get("cells", [])):
            cell.setdefault("id", f"cell-{i}")
    return nbformat.reads(json.dumps(data), as_version=4)


def write_notebook(nb, path: Path) -> None:
    """Write ``nb`` atomically (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(nbformat.writes(nb))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def collect(paths) -> list[Path]:
    """The notebooks named by ``paths``: .ipynb files as given, directories' ``*.ipynb`` (sorted)."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such notebook or directory")
    if not found:
        raise FileNotFoundError(f"no .ipynb files in {', '.join(map(str, paths))}")
    return found


def write_student_versions(sources, out_dir) -> list[Path]:
    """Write the student version of every notebook in ``sources`` (files or directories) into
    ``out_dir``. All notebooks are checked first: if any is refused, nothing is written and
    :class:`MarkerError` lists every problem. Returns the written paths."""
    notebooks = collect(sources)
    out_dir = Path(out_dir)
    targets = [out_dir / p.name for p in notebooks]
    resolved = {p.resolve() for p in notebooks}
    if clash := [str(t) for t in targets if t.resolve() in resolved]:
        raise ValueError(f"refusing to overwrite the instructor notebooks {', '.join(clash)}; "
                         f"choose an output directory other than the source directory, e.g. build/student/")
    if len({t.name for t in targets}) < len(targets):
        raise ValueError("two source notebooks have the same file name; give them one at a time or rename one")
    versions, problems = [], []
    for p in notebooks:
        nb = read_notebook(p)
        found = check_notebook(nb, str(p))
        problems += found
        if not found:
            versions.append(student_version(nb, p.name))
    if problems:
        raise MarkerError(problems)
    for nb, target in zip(versions, targets):
        write_notebook(nb, target)
    return targets


# --------------------------------------------------------------------------------------------
# Checks in the notebooks


def _as_array(value, name: str, what: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (no torch import needed here)
        value = value.detach().cpu().double().numpy()
    try:
        if isinstance(value, (str, bytes)):
            raise TypeError
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{name}: {what} should be a number, array or tensor, "
                             f"but it is a {type(value).__name__}") from None


def check_close(name: str, got, expected, hint: str = "", atol: float = 1e-6, rtol: float = 1e-5) -> None:
    r"""Assert that the student's answer ``got`` matches ``expected`` elementwise, with a friendly hint.

    Use it in check cells::

        check_close("q_sample(x0, t=[1, 500, 1000], noise)",
                    lambda: q_sample_mine(schedule, x0, t, noise), edudiff.q_sample(schedule, x0, t, noise),
                    hint="x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (eq. 4): alpha_BAR, not alpha")

    Args:
        name: which input is checked, e.g. ``"q_sample(x0, t=5, noise)"``; starts the message.
        got: the student's value (tensor, array or number), or a zero-argument callable computing it.
            With a callable, a ``NotImplementedError`` (the stub) comes out as a NotImplementedError
            that says "you haven't written it yet" instead of a traceback.
        expected: the reference value (from edudiff), same shape as ``got``.
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
            raise NotImplementedError(f"{name}: you haven't written it yet ({err}). Fill in the exercise "
                                      f"cell above, run it, then run this check again.") from None
    if got is None:
        raise AssertionError(f"{name}: got None. Did you forget the `return` line?{tail}")
    g, e = _as_array(got, name, "your answer"), _as_array(expected, name, "the expected value")
    if g.shape != e.shape:
        raise AssertionError(f"{name}: your answer has shape {g.shape} but the expected value has shape "
                             f"{e.shape}. Check broadcasting (e.g. a (B,) table needs .view(-1, 1, ...) "
                             f"against x of shape (B, ...)).{tail}")
    excess = np.abs(g - e) - (atol + rtol * np.abs(e))
    excess = np.where(np.isnan(excess), np.inf, excess)  # NaN never passes
    bad = int((excess > 0).sum())
    if bad == 0:
        return
    if g.ndim == 0:
        raise AssertionError(f"{name}: expected {e.item():.6g}, got {g.item():.6g} "
                             f"(allowed difference {atol:g} + {rtol:g}*|expected|).{tail}")
    worst = np.unravel_index(int(np.argmax(excess)), g.shape)
    raise AssertionError(f"{name}: {bad} of {g.size} entries are off. Worst at index {tuple(map(int, worst))}: "
                         f"expected {e[worst]:.6g}, got {g[worst]:.6g} "
                         f"(allowed difference {atol:g} + {rtol:g}*|expected|).{tail}")


# --------------------------------------------------------------------------------------------
# Executing and grading


def solution_cells(nb) -> list[int]:
    """Indices of the exercise cells: code cells with a SOLUTION region or nbgrader ``solution: true``."""
    return [i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (SOLUTION in _kinds(c) or _nbgrader(c).get("solution"))]


def exercise_checks(nb) -> dict[int, int | None]:
    """Map each check cell's index to the exercise (solution) cell it checks: the nearest one above.

    Solution cells: code cells with a SOLUTION region or nbgrader ``solution: true``. Check cells:
    code cells with nbgrader ``grade: true`` (and not solution) or with a HIDDEN TESTS region; for a
    solution cell followed by no check cell (notebooks without nbgrader metadata), the next code cell.
    """
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    solutions = solution_cells(nb)
    checks = {i for i in code if i not in solutions
              and (_nbgrader(nb.cells[i]).get("grade") or HIDDEN in _kinds(nb.cells[i]))}
    for s, nxt in zip(solutions, solutions[1:] + [len(nb.cells)]):
        between = [i for i in code if s < i < nxt]
        if between and not checks.intersection(between):
            checks.add(between[0])
    return {c: max([s for s in solutions if s < c], default=None) for c in sorted(checks)}


def execute(nb, cwd: str | os.PathLike = ".", timeout: int = 600):
    """Run every cell of ``nb`` in place (nbclient, a python3 kernel of this environment, errors
    recorded and execution continued) with ``cwd`` as working directory. Returns ``nb``."""
    from nbclient import NotebookClient  # imported here: only grading and tests need it
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def cell_errors(nb) -> dict[int, tuple[str, str]]:
    """``{cell index: (exception name, message)}`` for the executed code cells that raised."""
    errors = {}
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                errors[i] = (out.get("ename", "Error"), out.get("evalue", ""))
    return errors


@dataclass
class CheckResult:
    """One graded check: its name (grade_id or cell), the exercise it checks, points and outcome."""
    name: str
    exercise: str
    points: float
    passed: bool
    hint: str = ""


def _label(nb, i: int | None) -> str:
    return "-" if i is None else (_grade_id(nb.cells[i]) or f"cell {i}")


def grade(submission, source, timeout: int = 600, output=None) -> tuple[list[CheckResult], list[str]]:
    """Grade a student's ``submission`` against the instructor's ``source`` notebook.

    Each check cell of the source (with its hidden tests) replaces the matching cell of the
    submission (same nbgrader grade_id; else the same index, if the cell count is unchanged), so
    edited or deleted checks are restored; then the submission runs, in the source's folder.
    Returns the results per check and the errors raised in other cells (as lines of text);
    writes the executed notebook to ``output`` if given.
    """
    source, submission = Path(source), Path(submission)
    src, sub = read_notebook(source), read_notebook(submission)
    if problems := check_notebook(src, str(source)):
        raise MarkerError(problems)
    checks = exercise_checks(src)
    ids = {_grade_id(c): j for j, c in enumerate(sub.cells) if _grade_id(c)}
    placed = {}  # source check cell -> submission cell
    for i in checks:
        j = ids.get(_grade_id(src.cells[i]))
        if j is None and len(sub.cells) == len(src.cells) and sub.cells[i].cell_type == "code":
            j = i
        if j is not None:
            sub.cells[j].source = src.cells[i].source
            placed[i] = j
    execute(sub, cwd=source.parent, timeout=timeout)
    if output is not None:
        write_notebook(sub, Path(output))
    errors = cell_errors(sub)
    results = []
    for i, exercise in checks.items():
        if i in placed:
            err = errors.get(placed[i])
            hint = "" if err is None else f"{err[0]}: {err[1]}"
        else:
            err = hint = (f"this check cell is not in the submission (no cell with grade_id "
                          f"{_grade_id(src.cells[i])!r}, and it has {len(sub.cells)} cells where the source has "
                          f"{len(src.cells)}); students must keep the cells' nbgrader metadata")
        results.append(CheckResult(_label(src, i), _label(src, exercise),
                                   float(_nbgrader(src.cells[i]).get("points", 1)), err is None, hint))
    other = [f"cell {j}{f' ({_grade_id(sub.cells[j])})' if _grade_id(sub.cells[j]) else ''}: "
             f"{name}: {msg.splitlines()[0] if msg else ''}"
             for j, (name, msg) in sorted(errors.items()) if j not in placed.values()]
    return results, other


def format_report(results: list[CheckResult], other: list[str] = ()) -> str:
    """The grading summary as a table, hints under failed rows, then errors in other cells."""
    w1 = max([len("exercise")] + [len(r.exercise) for r in results])
    w2 = max([len("check")] + [len(r.name) for r in results])
    rule = "-" * (w1 + w2 + 24)
    lines = [f"{'exercise':<{w1}}  {'check':<{w2}}  {'points':>9}  result", rule]
    for r in results:
        got = r.points if r.passed else 0.0
        lines.append(f"{r.exercise:<{w1}}  {r.name:<{w2}}  {got:>4g} / {r.points:<3g} {'pass' if r.passed else 'FAIL'}")
        lines += [f"    {line}" for line in r.hint.splitlines()]
    total, score = sum(r.points for r in results), sum(r.points for r in results if r.passed)
    lines += [rule, f"{'total':<{w1 + w2 + 2}}  {score:>4g} / {total:<3g} "
                    f"({sum(r.passed for r in results)} of {len(results)} checks pass)"]
    if other:
        lines += ["", "Errors in other cells (not graded; they may explain a failure):"]
        lines += [f"  {line}" for line in other]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edudiff.homework", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Homework tools for instructors. Exercises use nbgrader's markers: '### BEGIN SOLUTION' /\n"
                    "'### END SOLUTION' around the answer, '### BEGIN HIDDEN TESTS' / '### END HIDDEN TESTS'\n"
                    "around extra checks; each alone on its line, balanced, never nested.",
        epilog="examples:\n"
               "  python -m edudiff.homework check notebooks/\n"
               "  python -m edudiff.homework student notebooks/ build/student/\n"
               "  python -m edudiff.homework grade alice/02_closed_form_jump.ipynb \\\n"
               "      --source notebooks/02_closed_form_jump.ipynb\n\n"
               "exit status: 0 on success; 1 if a notebook is refused or (grade) a check fails.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,student,grade}")
    paths_help = "a notebook, or a directory (its *.ipynb)"
    p = sub.add_parser("check", help="validate the markers (and nbgrader metadata) of notebooks",
                       description="Validate the markers of notebooks (exit 1 if any is broken); warn about "
                                   "nbgrader metadata that `nbgrader generate_assignment` would reject.")
    p.add_argument("paths", nargs="+", metavar="NOTEBOOK_OR_DIR", help=paths_help)
    p = sub.add_parser("student", help="write student versions (solutions stubbed, hidden tests removed)",
                       description="Write the student version of each notebook into OUT_DIR: solution regions "
                                   "become `raise NotImplementedError(...)`, hidden tests are removed, outputs "
                                   "cleared. All notebooks are checked first; if any is refused, nothing is written.")
    p.add_argument("paths", nargs="+", metavar="NOTEBOOK_OR_DIR", help=paths_help)
    p.add_argument("out_dir", metavar="OUT_DIR", help="where to write them (same file names); created if missing")
    p = sub.add_parser("grade", help="run a submission with the hidden tests put back; report each check",
                       description="Put the source's check cells (with hidden tests) into the submission (matched "
                                   "by nbgrader grade_id, else by position), run it with nbclient in the source's "
                                   "folder, and report pass/fail per check with the assert message as the hint.")
    p.add_argument("submission", metavar="SUBMITTED.ipynb", help="the student's notebook")
    p.add_argument("--source", required=True, metavar="INSTRUCTOR.ipynb",
                   help="the instructor's notebook (with solutions and hidden tests)")
    p.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default: 600)")
    p.add_argument("--output", metavar="RUN.ipynb", help="also save the executed notebook here")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            status = 0
            for path in collect(args.paths):
                nb = read_notebook(path)
                problems = check_notebook(nb, str(path))
                for w in nbgrader_warnings(nb, str(path)) if not problems else []:
                    print(f"warning: {w}")
                if problems:
                    status = 1
                    print("\n".join(f"error: {p}" for p in problems))
                else:
                    checks = exercise_checks(nb)
                    print(f"ok: {path} (markers valid; exercises: {len(solution_cells(nb))}, "
                          f"check cells: {len(checks)})")
            return status
        if args.command == "student":
            for target in write_student_versions(args.paths, args.out_dir):
                print(f"wrote {target}")
            return 0
        results, other = grade(args.submission, args.source, timeout=args.timeout, output=args.output)
        print(f"Grading {args.submission} against {args.source}\n")
        print(format_report(results, other))
        return 0 if results and all(r.passed for r in results) else 1
    except MarkerError as err:
        print(f"refused (nothing written): {len(err.problems)} marker problem(s)\n{err}", file=sys.stderr)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
