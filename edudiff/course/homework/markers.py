"""nbgrader markers in the course notebooks: parsing, validation, and which cells are exercises and checks.

A solution region is ``### BEGIN SOLUTION`` ... ``### END SOLUTION``, a hidden-test region
``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``; each marker alone on its line (indentation
allowed), balanced, never nested. Problems name file, cell index (0-based), line (1-based) and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Problem",
    "MarkerError",
    "check_notebook",
    "nbgrader_warnings",
    "solution_cells",
    "exercise_checks",
    "SOLUTION",
    "HIDDEN",
    "TEXT_STUB",
]

SOLUTION, HIDDEN = "SOLUTION", "HIDDEN TESTS"
MARKERS = {
    f"### BEGIN {SOLUTION}": ("begin", SOLUTION),
    f"### END {SOLUTION}": ("end", SOLUTION),
    f"### BEGIN {HIDDEN}": ("begin", HIDDEN),
    f"### END {HIDDEN}": ("end", HIDDEN),
}
# nbgrader treats ANY line containing one of these phrases as a marker, so we refuse near misses.
_PHRASES = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
TEXT_STUB = "YOUR ANSWER HERE"  # nbgrader's stub for written (markdown) answers


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


def nbgrader_metadata(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def grade_id_of(cell) -> str | None:
    return nbgrader_metadata(cell).get("grade_id") or None


def marker_regions(source: str) -> tuple[list[tuple[str, int, int]], tuple[int, str, str] | None]:
    """Parse one cell's markers. Returns ``(regions, problem)``: regions as (kind, begin, end)
    0-based line numbers, and the first problem as (0-based line, what, fix) or None."""
    regions, open_kind, open_line = [], None, 0
    for n, line in enumerate(source.split("\n")):
        marker = MARKERS.get(line.strip())
        if marker is None:
            if any(p in line for p in _PHRASES):
                return regions, (
                    n,
                    f"{line.strip()!r} is not a marker line, but nbgrader would read it as one",
                    "put the marker alone on its line, exactly '### BEGIN SOLUTION' (or END, "
                    "or HIDDEN TESTS), or reword the text so it does not contain the phrase",
                )
            continue
        action, kind = marker
        if action == "begin" and open_kind is not None:
            return regions, (
                n,
                f"'### BEGIN {kind}' inside the {open_kind} region opened at line {open_line + 1}"
                f" (regions cannot be nested)",
                f"end the first region with '### END {open_kind}' before this line, or delete one "
                f"of the two BEGIN lines",
            )
        if action == "begin":
            open_kind, open_line = kind, n
        elif open_kind is None:
            return regions, (
                n,
                f"'### END {kind}' without a '### BEGIN {kind}' above it",
                f"add '### BEGIN {kind}' on its own line where the region starts, or delete this line",
            )
        elif open_kind != kind:
            return regions, (
                n,
                f"'### END {kind}' inside the {open_kind} region opened at line {open_line + 1}",
                f"close that region with '### END {open_kind}' first; regions cannot be nested",
            )
        else:
            regions.append((kind, open_line, n))
            open_kind = None
    if open_kind is not None:
        return regions, (
            open_line,
            f"'### BEGIN {open_kind}' has no matching '### END {open_kind}'",
            f"add '### END {open_kind}' on its own line after the last line of the region",
        )
    return regions, None


def _kinds(cell) -> set[str]:
    """The kinds of region (SOLUTION, HIDDEN TESTS) in a cell."""
    return {kind for kind, _, _ in marker_regions(cell.source)[0]}


def check_notebook(nb, path: str = "<notebook>") -> list[Problem]:
    """Every marker problem in ``nb`` (empty list = valid): unbalanced, nested, END without BEGIN,
    or a line that nbgrader would take for a marker but is not exactly one."""
    problems = []
    for i, cell in enumerate(nb.cells):
        _, problem = marker_regions(cell.source)
        if problem is not None:
            line, what, fix = problem
            problems.append(Problem(path, i, line + 1, what, fix, grade_id_of(cell)))
    return problems


_SOLUTION_META = (
    'set cell metadata {"nbgrader": {"solution": true, "grade": false, '
    '"locked": false, "grade_id": "...", "schema_version": 3, "task": false}}'
)
_GRADE_META = (
    'set cell metadata {"nbgrader": {"grade": true, "solution": false, "locked": '
    'true, "points": 1, "grade_id": "...", "schema_version": 3, "task": false}}'
)


def _cell_warnings(cell) -> list[tuple[str, str]]:
    """(what, fix) for each nbgrader rule one cell breaks, on its own (grade_id clashes are checked across cells)."""
    meta, kinds = nbgrader_metadata(cell), _kinds(cell)
    rules = [
        (
            SOLUTION in kinds and not meta.get("solution"),
            "solution region in a cell without nbgrader metadata solution: true (nbgrader refuses it)",
            _SOLUTION_META,
        ),
        (
            HIDDEN in kinds and not meta.get("grade"),
            "hidden-test region in a cell without nbgrader metadata grade: true (nbgrader refuses it)",
            _GRADE_META,
        ),
        (
            meta.get("solution") and SOLUTION not in kinds,
            "nbgrader solution cell without '### BEGIN SOLUTION' markers: "
            "nbgrader replaces the whole cell with its stub, we keep it",
            "add the markers around the solution lines, or set solution: false",
        ),
        (
            meta.get("solution") and cell.cell_type == "markdown" and not meta.get("grade"),
            "markdown solution cell that is not a grade cell (nbgrader refuses it)",
            'add "grade": true and "points" to its metadata',
        ),
        (
            (meta.get("solution") or meta.get("grade")) and not grade_id_of(cell),
            "nbgrader cell without a grade_id",
            "add a unique grade_id to the cell's nbgrader metadata",
        ),
    ]
    return [(what, fix) for broken, what, fix in rules if broken]


def nbgrader_warnings(nb, path: str = "<notebook>") -> list[Problem]:
    """Metadata that ``nbgrader generate_assignment`` would reject or treat differently from us.
    Not needed by our own tools, but the course promises nbgrader compatibility."""
    warnings, seen = [], {}
    for i, cell in enumerate(nb.cells):
        gid = grade_id_of(cell)
        warnings += [Problem(path, i, None, what, fix, gid) for what, fix in _cell_warnings(cell)]
        if gid in seen:
            warnings.append(
                Problem(
                    path, i, None, f"grade_id {gid!r} already used by cell {seen[gid]}",
                    "give every nbgrader cell a unique grade_id", gid,
                )
            )  # fmt: skip
        if gid:
            seen.setdefault(gid, i)
    return warnings


def solution_cells(nb) -> list[int]:
    """Indices of the exercise cells: code cells with a SOLUTION region or nbgrader ``solution: true``."""
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (SOLUTION in _kinds(c) or nbgrader_metadata(c).get("solution"))
    ]


def exercise_checks(nb) -> dict[int, int | None]:
    """Map each check cell's index to the exercise (solution) cell it checks: the nearest one above.

    Solution cells: code cells with a SOLUTION region or nbgrader ``solution: true``. Check cells:
    code cells with nbgrader ``grade: true`` (and not solution) or with a HIDDEN TESTS region; for a
    solution cell followed by no check cell (notebooks without nbgrader metadata), the next code cell.
    """
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    solutions = solution_cells(nb)
    checks = {
        i
        for i in code
        if i not in solutions and (nbgrader_metadata(nb.cells[i]).get("grade") or HIDDEN in _kinds(nb.cells[i]))
    }
    for s, nxt in zip(solutions, solutions[1:] + [len(nb.cells)]):
        between = [i for i in code if s < i < nxt]
        if between and not checks.intersection(between):
            checks.add(between[0])
    return {c: max([s for s in solutions if s < c], default=None) for c in sorted(checks)}
