r"""Homework workflow for instructors: check the markers, write student versions, grade submissions.

The course notebooks mark their exercises with nbgrader's markers, so the same notebooks also work
with ``nbgrader generate_assignment``. In a code cell::

    def my_q_sample(schedule, x0, t, noise):
        ### BEGIN SOLUTION
        ab = schedule.alpha_bars[t].view(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        ### END SOLUTION

Modules: :mod:`.markers` (parse and validate markers; which cells are exercises and checks),
:mod:`.student` (student versions), :mod:`.grading` (run a submission with the checks put back),
:mod:`.cli` (the command line). What students' check cells use lives in :mod:`edudiff.course.checks`
(``check_close``, ``references_blocked``), re-exported here for old notebooks.

Command line (``python -m edudiff homework --help``)::

    python -m edudiff homework check notebooks/                        # validate markers only
    python -m edudiff homework student notebooks/ build/student/       # write student versions
    python -m edudiff homework grade submitted.ipynb --source notebooks/02_closed_form_jump.ipynb

The property "the student version fails exactly in the exercises" is nbgrader's ``validate --invert``;
tests/test_homework.py checks it for every notebook in notebooks/, and that a submission which only
calls edudiff's reference fails every check.

Taught in: the homework cells of notebooks 01-07 (see the README's "Homework" section).
"""

from ..checks import check_close, check_own_work, references_blocked
from .cli import main
from .grading import CheckResult, cell_errors, execute, format_report, grade
from .markers import MarkerError, Problem, check_notebook, exercise_checks, nbgrader_warnings, solution_cells
from .student import collect, read_notebook, student_version, write_notebook, write_student_versions

__all__ = [
    "main",
    "check_close",
    "check_own_work",
    "references_blocked",
    "check_notebook",
    "nbgrader_warnings",
    "student_version",
    "write_student_versions",
    "read_notebook",
    "write_notebook",
    "collect",
    "grade",
    "format_report",
    "execute",
    "cell_errors",
    "solution_cells",
    "exercise_checks",
    "CheckResult",
    "MarkerError",
    "Problem",
]
