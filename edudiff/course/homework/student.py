"""Student versions of the instructor notebooks: solutions stubbed, hidden tests removed, outputs cleared.

The student version replaces each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region (markers
included) by one line, indented like the BEGIN line, so the ``def`` above still parses::

        raise NotImplementedError("Exercise <grade_id> in <notebook>: write your solution here")

In markdown cells the region becomes nbgrader's ``YOUR ANSWER HERE``. Hidden-test regions are
removed (``grade`` puts them back). Notebook and cell metadata are kept.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import nbformat

from ...utils import atomic_write
from .markers import SOLUTION, TEXT_STUB, MarkerError, check_notebook, grade_id_of, marker_regions

__all__ = ["student_version", "read_notebook", "write_notebook", "collect", "write_student_versions"]


def _stub(cell, index: int, name: str) -> str:
    if cell.cell_type != "code":
        return TEXT_STUB
    label = grade_id_of(cell) or f"at cell {index}"
    return f"raise NotImplementedError({json.dumps(f'Exercise {label} in {name}: write your solution here')})"


def student_version(nb, name: str = "<notebook>", replacements: dict[str, str] | None = None):
    """A copy of ``nb`` with solutions replaced by stubs, hidden tests removed and outputs cleared.
    ``name`` (the notebook's file name) goes into the stubs and error messages.
    ``replacements`` maps grade_ids to code that replaces their solution region instead of the stub
    (indented like the BEGIN line; several lines allowed) — e.g. to build a submission that merely
    calls edudiff's reference, which the checks must fail.
    Raises :class:`MarkerError` if the markers are broken."""
    problems = check_notebook(nb, name)
    if problems:
        raise MarkerError(problems)
    out = copy.deepcopy(nb)
    for i, cell in enumerate(out.cells):
        lines, regions = cell.source.split("\n"), marker_regions(cell.source)[0]
        starts = {begin: (kind, end) for kind, begin, end in regions}
        new, n = [], 0
        while n < len(lines):
            if n in starts:
                kind, end = starts[n]
                if kind == SOLUTION:  # the stub takes the BEGIN line's indentation, like nbgrader
                    indent = lines[n][: len(lines[n]) - len(lines[n].lstrip())]
                    body = (replacements or {}).get(grade_id_of(cell)) or _stub(cell, i, name)
                    new += [indent + line for line in body.split("\n")]
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
    """Write ``nb`` atomically (:func:`edudiff.utils.atomic_write`: temp file + os.replace)."""
    atomic_write(path, nbformat.writes(nb).encode("utf-8"), fsync=False)


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
        raise ValueError(
            f"refusing to overwrite the instructor notebooks {', '.join(clash)}; "
            f"choose an output directory other than the source directory, e.g. build/student/"
        )
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
