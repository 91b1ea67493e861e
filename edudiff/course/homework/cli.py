"""The instructors' command line: ``python -m edudiff homework check|student|grade`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys

from .grading import format_report, grade
from .markers import MarkerError, check_notebook, exercise_checks, nbgrader_warnings, solution_cells
from .student import collect, read_notebook, write_student_versions

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edudiff homework",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Homework tools for instructors. Exercises use nbgrader's markers: '### BEGIN SOLUTION' /\n"
        "'### END SOLUTION' around the answer, '### BEGIN HIDDEN TESTS' / '### END HIDDEN TESTS'\n"
        "around extra checks; each alone on its line, balanced, never nested.",
        epilog="examples:\n"
        "  python -m edudiff homework check notebooks/\n"
        "  python -m edudiff homework student notebooks/ build/student/\n"
        "  python -m edudiff homework grade alice/02_closed_form_jump.ipynb \\\n"
        "      --source notebooks/02_closed_form_jump.ipynb\n\n"
        "exit status: 0 on success; 1 if a notebook is refused or (grade) a check fails.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,student,grade}")
    paths_help = "a notebook, or a directory (its *.ipynb)"
    p = sub.add_parser(
        "check",
        help="validate the markers (and nbgrader metadata) of notebooks",
        description="Validate the markers of notebooks (exit 1 if any is broken); warn about "
        "nbgrader metadata that `nbgrader generate_assignment` would reject.",
    )
    p.add_argument("paths", nargs="+", metavar="NOTEBOOK_OR_DIR", help=paths_help)
    p = sub.add_parser(
        "student",
        help="write student versions (solutions stubbed, hidden tests removed)",
        description="Write the student version of each notebook into OUT_DIR: solution regions "
        "become `raise NotImplementedError(...)`, hidden tests are removed, outputs "
        "cleared. All notebooks are checked first; if any is refused, nothing is written.",
    )
    p.add_argument("paths", nargs="+", metavar="NOTEBOOK_OR_DIR", help=paths_help)
    p.add_argument("out_dir", metavar="OUT_DIR", help="where to write them (same file names); created if missing")
    p = sub.add_parser(
        "grade",
        help="run a submission with the hidden tests put back; report each check",
        description="Put the source's check cells (with hidden tests) into the submission (matched "
        "by nbgrader grade_id, else by position), run it with nbclient in the source's "
        "folder, and report pass/fail per check with the assert message as the hint.",
    )
    p.add_argument("submission", metavar="SUBMITTED.ipynb", help="the student's notebook")
    p.add_argument(
        "--source",
        required=True,
        metavar="INSTRUCTOR.ipynb",
        help="the instructor's notebook (with solutions and hidden tests)",
    )
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
                    print(
                        f"ok: {path} (markers valid; exercises: {len(solution_cells(nb))}, check cells: {len(checks)})"
                    )
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
