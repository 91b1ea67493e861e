"""Grading: run a student's notebook with the instructor's check cells (hidden tests included) put back.

A check cell that fails reports its assert message as the hint; a check that catches a function
merely calling edudiff's reference (``edudiff.course.checks.references_blocked``) reports that too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .markers import MarkerError, check_notebook, exercise_checks, grade_id_of, nbgrader_metadata
from .student import read_notebook, write_notebook

__all__ = ["notebook_client", "execute", "cell_errors", "CheckResult", "grade", "format_report"]


def notebook_client(nb, **kwargs):
    """An ``nbclient.NotebookClient`` for ``nb`` (``kwargs`` as nbclient's) whose stand-in for ipywidgets' ``Output``
    widget keeps what it captures but never writes back to the kernel.

    nbclient's own stand-in answers every captured output with a ``comm_msg`` sent on the shell channel, in the middle
    of the cell, while the client is waiting on that same channel for the cell's ``execute_reply``. On a loaded machine
    that reply was seen to go unnoticed: kernel and client both idle until the cell timeout (the same libzmq wake-up
    race as ipython/ipykernel#1529, on the client's side; nbclient issue #312). Every ``interactive`` slider holds an
    ``Output`` widget, so the course's executions (site, grading, tests) never send that message."""
    from nbclient import NotebookClient  # imported here: only grading, the site build and tests need it
    from nbclient.output_widget import OutputWidget

    class QuietOutputWidget(OutputWidget):
        def sync_state(self) -> None:  # the kernel never needs the outputs back: nothing is sent
            return None

    client = NotebookClient(nb, **kwargs)
    client.widget_registry = {"@jupyter-widgets/output": {"OutputModel": QuietOutputWidget}}
    return client


def execute(nb, cwd: str | os.PathLike = ".", timeout: int = 600):
    """Run every cell of ``nb`` in place (nbclient, a python3 kernel of this environment, errors
    recorded and execution continued) with ``cwd`` as working directory. Returns ``nb``."""
    notebook_client(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(cwd)}}
    ).execute()
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
    return "-" if i is None else (grade_id_of(nb.cells[i]) or f"cell {i}")


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
    ids = {grade_id_of(c): j for j, c in enumerate(sub.cells) if grade_id_of(c)}
    placed = {}  # source check cell -> submission cell
    for i in checks:
        j = ids.get(grade_id_of(src.cells[i]))
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
            err = hint = (
                f"this check cell is not in the submission (no cell with grade_id "
                f"{grade_id_of(src.cells[i])!r}, and it has {len(sub.cells)} cells where the source has "
                f"{len(src.cells)}); students must keep the cells' nbgrader metadata"
            )
        results.append(
            CheckResult(
                _label(src, i),
                _label(src, exercise),
                float(nbgrader_metadata(src.cells[i]).get("points", 1)),
                err is None,
                hint,
            )
        )
    other = [
        f"cell {j}{f' ({grade_id_of(sub.cells[j])})' if grade_id_of(sub.cells[j]) else ''}: "
        f"{name}: {msg.splitlines()[0] if msg else ''}"
        for j, (name, msg) in sorted(errors.items())
        if j not in placed.values()
    ]
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
    lines += [
        rule,
        f"{'total':<{w1 + w2 + 2}}  {score:>4g} / {total:<3g} "
        f"({sum(r.passed for r in results)} of {len(results)} checks pass)",
    ]
    if other:
        lines += ["", "Errors in other cells (not graded; they may explain a failure):"]
        lines += [f"  {line}" for line in other]
    return "\n".join(lines)
