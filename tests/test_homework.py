"""Tests for edudiff.course.homework: student versions, marker checks, grading, integrity of the checks.

Fixture notebooks are built in tmp_path; the committed notebooks in notebooks/ are checked too
(parametrized over the glob, skipped while there are none). Tests that start a kernel are marked
slow (`pytest -m "not slow"` skips them).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from edudiff.course import homework
from edudiff.course.checks import INTEGRITY_MESSAGE
from edudiff.course.homework import MarkerError, cell_errors, exercise_checks, solution_cells

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted((REPO / "notebooks").glob("*.ipynb"))
committed = pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=p.name) for p in COMMITTED]
    or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks committed in notebooks/ yet"))],
)


def solution_meta(gid):
    return {
        "nbgrader": {
            "grade": False,
            "solution": True,
            "locked": False,
            "schema_version": 3,
            "task": False,
            "grade_id": gid,
        }
    }


def check_meta(gid, points=1):
    return {
        "nbgrader": {
            "grade": True,
            "solution": False,
            "locked": True,
            "points": points,
            "schema_version": 3,
            "task": False,
            "grade_id": gid,
        }
    }


def answer_meta(gid, points=1):
    """A written answer: nbgrader wants markdown solution cells to be (manually) graded too."""
    return {
        "nbgrader": {
            "grade": True,
            "solution": True,
            "locked": False,
            "points": points,
            "schema_version": 3,
            "task": False,
            "grade_id": gid,
        }
    }


SCALE = '''def scale(alpha_bar):
    """The mean coefficient sqrt(alpha_bar) of eq. 4."""
    ### BEGIN SOLUTION
    root = np.sqrt(alpha_bar)
    return root
    ### END SOLUTION'''
SCALE_CHECK = """check_close("scale(alpha_bar=1.0)", lambda: scale(1.0), 1.0, hint="sqrt(alpha_bar_t) (eq. 4)")
### BEGIN HIDDEN TESTS
check_close("scale(alpha_bar=[0.25, 0.81])", lambda: scale(np.array([0.25, 0.81])), np.array([0.5, 0.9]),
            hint="the mean of q(x_t|x_0) is sqrt(alpha_bar_t) x_0 (eq. 4)")
### END HIDDEN TESTS"""
TOTAL = """for k in range(2):
    if k == 1:
        ### BEGIN SOLUTION
        total = 3
        ### END SOLUTION
print("loop done")"""
TOTAL_CHECK = 'assert total == 3, f"total should be 3 (1 + 2), got {total}"'


def fixture_notebook() -> nbformat.NotebookNode:
    """An instructor notebook: a function-body exercise with a hidden test, a top-level exercise
    nested in blocks, a markdown answer, a magic, and stale outputs to clear."""
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "course": {"keep": "me"},
        }
    )
    nb.cells = [
        new_markdown_cell("# Fixture\nWrite `scale`; expected value: `scale(0.25) = 0.5`."),
        new_code_cell("%matplotlib inline\nimport numpy as np\nfrom edudiff.course.homework import check_close"),
        new_code_cell(SCALE, metadata=solution_meta("scale")),
        new_code_cell(SCALE_CHECK, metadata=check_meta("scale-check")),
        new_code_cell(TOTAL, metadata=solution_meta("total")),
        new_code_cell(TOTAL_CHECK, metadata=check_meta("total-check", points=2)),
        new_markdown_cell(
            "Why?\n### BEGIN SOLUTION\nBecause sqrt.\n### END SOLUTION\nThanks.", metadata=answer_meta("why")
        ),
        new_code_cell(
            "print('done')",
            execution_count=7,
            metadata={"scrolled": True, "execution": {"iopub.status.busy": "2024-01-01T00:00:00Z"}},
            outputs=[new_output("stream", name="stdout", text="done\n")],
        ),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    return nb


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def cli(*args):
    """Run ``python -m edudiff homework ARGS`` in-process (a subprocess would re-import torch)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = homework.main([str(a) for a in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_module_entry_point_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        homework.main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and all(cmd in out for cmd in ("check", "student", "grade"))
    r = subprocess.run(
        [sys.executable, "-m", "edudiff", "homework", "check", "no/such.ipynb"], capture_output=True, text=True
    )
    assert r.returncode == 1 and r.stderr == "error: no/such.ipynb: no such notebook or directory\n"


def compile_cell(source: str, label: str):
    """compile() a code cell after turning IPython syntax (magics, !shell) into plain Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    compile(TransformerManager().transform_cell(source), label, "exec")


# --------------------------------------------------------------------------------------------
# Student versions


def test_solution_regions_become_indented_stubs_that_compile():
    nb = fixture_notebook()
    student = homework.student_version(nb, "hw.ipynb")
    assert student.cells[2].source == (
        'def scale(alpha_bar):\n    """The mean coefficient sqrt(alpha_bar) of eq. 4."""\n'
        '    raise NotImplementedError("Exercise scale in hw.ipynb: write your solution here")'
    )
    assert student.cells[4].source == (
        "for k in range(2):\n    if k == 1:\n"
        '        raise NotImplementedError("Exercise total in hw.ipynb: write your solution here")\n'
        'print("loop done")'
    )
    for i, cell in enumerate(student.cells):
        if cell.cell_type == "code":
            compile_cell(cell.source, f"hw.ipynb cell {i}")
    # the stub names the cell index when there is no grade_id
    del nb.cells[2].metadata["nbgrader"]
    assert "Exercise at cell 2 in hw.ipynb" in homework.student_version(nb, "hw.ipynb").cells[2].source


def test_hidden_tests_removed_and_markdown_answer_stubbed():
    student = homework.student_version(fixture_notebook(), "hw.ipynb")
    assert student.cells[3].source == SCALE_CHECK.split("\n")[0]
    assert student.cells[6].source == "Why?\nYOUR ANSWER HERE\nThanks."
    text = nbformat.writes(student)
    for word in ("BEGIN", "END SOLUTION", "HIDDEN", "np.sqrt", "0.81", "Because"):
        assert word not in text


def test_outputs_cleared_metadata_and_other_cells_kept():
    nb = fixture_notebook()
    student = homework.student_version(nb, "hw.ipynb")
    assert all(c.outputs == [] and c.execution_count is None for c in student.cells if c.cell_type == "code")
    assert student.cells[7].metadata == {}  # run-time state (execution timing, scrolled) dropped
    assert student.metadata == nb.metadata
    assert [c.metadata for c in student.cells[:7]] == [c.metadata for c in nb.cells[:7]]
    assert [c.id for c in student.cells] == [c.id for c in nb.cells]
    for i in (0, 1, 5, 7):
        assert student.cells[i].source == nb.cells[i].source
    assert nb.cells[7].outputs and "BEGIN SOLUTION" in nb.cells[2].source  # the input is untouched


def test_cli_is_idempotent_and_deterministic(tmp_path):
    src = write(fixture_notebook(), tmp_path / "src" / "hw.ipynb")
    write(new_notebook(cells=[new_code_cell("x = 1")]), tmp_path / "src" / "plain.ipynb")
    for out in ("a", "b"):
        r = cli("student", tmp_path / "src", tmp_path / out)
        assert r.returncode == 0, r.stderr
    r = cli("student", tmp_path / "a" / "hw.ipynb", tmp_path / "again")  # a single file, on its own output
    assert r.returncode == 0, r.stderr
    first = (tmp_path / "a" / "hw.ipynb").read_bytes()
    assert first == (tmp_path / "b" / "hw.ipynb").read_bytes() == (tmp_path / "again" / "hw.ipynb").read_bytes()
    assert (tmp_path / "a" / "plain.ipynb").exists() and src.read_bytes() != first


def test_missing_cell_ids_get_deterministic_ids(tmp_path):
    nb = fixture_notebook()
    text = re.sub(r'\s*"id": "c\d+",', "", nbformat.writes(nb))
    (tmp_path / "hw.ipynb").write_text(text)
    outs = [homework.write_student_versions([tmp_path / "hw.ipynb"], tmp_path / d)[0].read_bytes() for d in "ab"]
    assert outs[0] == outs[1] and b'"id": "cell-2"' in outs[0]


def test_refuses_to_overwrite_the_instructor_notebooks(tmp_path):
    write(fixture_notebook(), tmp_path / "hw.ipynb")
    r = cli("student", tmp_path, tmp_path)
    assert r.returncode == 1 and "refusing to overwrite" in r.stderr
    assert "BEGIN SOLUTION" in (tmp_path / "hw.ipynb").read_text()


BROKEN = {
    "unbalanced": ("x = 1\n### BEGIN SOLUTION\ny = 2", 2, "has no matching '### END SOLUTION'"),
    "nested": (
        "### BEGIN SOLUTION\na = 1\n    ### BEGIN SOLUTION\n### END SOLUTION",
        3,
        "inside the SOLUTION region opened at line 1",
    ),
    "hidden-in-solution": (
        "### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION",
        2,
        "'### BEGIN HIDDEN TESTS' inside the SOLUTION region",
    ),
    "end-without-begin": ("a = 1\nb = 2\n### END SOLUTION", 3, "'### END SOLUTION' without a '### BEGIN SOLUTION'"),
    "wrong-end": (
        "### BEGIN HIDDEN TESTS\nassert 1\n### END SOLUTION",
        3,
        "'### END SOLUTION' inside the HIDDEN TESTS region",
    ),
    "not-alone": ("x = 1  ### BEGIN SOLUTION\n### END SOLUTION", 1, "is not a marker line"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_markers_refused_with_file_cell_line(tmp_path, kind):
    source, line, what = BROKEN[kind]
    good = write(fixture_notebook(), tmp_path / "src" / "a_good.ipynb")
    bad_nb = fixture_notebook()
    bad_nb.cells.insert(3, new_code_cell(source, metadata=solution_meta("broken")))
    bad = write(bad_nb, tmp_path / "src" / "b_bad.ipynb")
    with pytest.raises(MarkerError) as info:
        homework.write_student_versions([tmp_path / "src"], tmp_path / "out")
    [problem] = info.value.problems
    assert (problem.path, problem.cell, problem.line) == (str(bad), 3, line)
    assert what in problem.what and problem.fix
    r = cli("student", tmp_path / "src", tmp_path / "out")
    assert r.returncode == 1
    assert f"{bad}, cell 3 (grade_id 'broken'), line {line}: " in r.stderr and "fix: " in r.stderr
    assert not (tmp_path / "out").exists()  # nothing written, not even the good notebook
    r = cli("check", good, bad)
    assert r.returncode == 1 and f"ok: {good}" in r.stdout and f"error: {bad}, cell 3" in r.stdout


def test_every_broken_cell_is_reported():
    nb = new_notebook(
        cells=[new_code_cell("### END SOLUTION"), new_code_cell("ok = 1"), new_code_cell("### BEGIN HIDDEN TESTS")]
    )
    assert [(p.cell, p.line) for p in homework.check_notebook(nb, "x.ipynb")] == [(0, 1), (2, 1)]


def test_check_accepts_valid_notebook_and_warns_about_nbgrader_metadata(tmp_path):
    path = write(fixture_notebook(), tmp_path / "hw.ipynb")
    r = cli("check", path)
    assert r.returncode == 0 and "warning" not in r.stdout
    assert f"ok: {path} (markers valid; exercises: 2, check cells: 2)" in r.stdout
    nb = fixture_notebook()
    del nb.cells[2].metadata["nbgrader"]  # solution region in a cell nbgrader doesn't know is one
    nb.cells[5].metadata["nbgrader"]["grade_id"] = "scale-check"  # duplicate id
    r = cli("check", write(nb, tmp_path / "meta.ipynb"))
    assert r.returncode == 0  # warnings only: our tools don't need the metadata
    assert "cell 2: solution region in a cell without nbgrader metadata solution: true" in r.stdout
    assert "grade_id 'scale-check' already used by cell 3" in r.stdout


def test_exercise_checks_pairs_checks_with_exercises():
    nb = fixture_notebook()
    assert solution_cells(nb) == [2, 4] and exercise_checks(nb) == {3: 2, 5: 4}
    for cell in nb.cells:  # without metadata: the code cell after each exercise is its check
        cell.metadata.pop("nbgrader", None)
    assert exercise_checks(nb) == {3: 2, 5: 4}


# --------------------------------------------------------------------------------------------
# Executed notebooks (start a Jupyter kernel)


def assert_fails_only_in_exercises(instructor, executed, label):
    """nbgrader's `validate --invert`: the student version must fail in every check of every
    exercise, and nowhere but in exercise cells (NotImplementedError) and their checks."""
    errors, checks, solutions = cell_errors(executed), exercise_checks(instructor), solution_cells(instructor)
    wrong = []
    for i, (name, msg) in sorted(errors.items()):
        allowed = (
            {"NotImplementedError"}
            if i in solutions
            else {"NotImplementedError", "AssertionError", "NameError"}
            if i in checks
            else set()
        )
        if name not in allowed:
            kind = "exercise" if i in solutions else "check" if i in checks else "ordinary"
            wrong.append(f"{label} cell {i} ({kind} cell) raised {name}: {msg.splitlines()[0] if msg else ''}")
    for s in solutions:
        mine = [c for c, e in checks.items() if e == s]
        if not mine:
            wrong.append(f"{label}: exercise cell {s} has no check cell after it")
        wrong += [
            f"{label}: check cell {c} passes in the student version, so it does not test exercise cell {s}"
            for c in mine
            if c not in errors
        ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_fixture_student_version_fails_exactly_in_exercises(tmp_path):
    nb = fixture_notebook()
    executed = homework.execute(homework.student_version(nb, "hw.ipynb"), cwd=tmp_path, timeout=120)
    errors = cell_errors(executed)
    assert sorted(errors) == [3, 4, 5]
    assert errors[3][0] == "NotImplementedError" and "you haven't written it yet" in errors[3][1]
    assert_fails_only_in_exercises(nb, executed, "hw.ipynb")
    assert nb.cells[7].outputs[0].text == "done\n"  # the instructor notebook was copied, not run
    assert executed.cells[7].outputs[0].text == "done\n"


def submission(tmp_path, name, scale_body, tamper=False):
    """The student version with the exercises filled in (scale's body given), as a student saves it."""
    student = homework.student_version(fixture_notebook(), "hw.ipynb")
    student.cells[2].source = re.sub(r"raise NotImplementedError\(.*\)", scale_body, student.cells[2].source)
    student.cells[4].source = re.sub(r"raise NotImplementedError\(.*\)", "total = 1 + 2", student.cells[4].source)
    if tamper:
        student.cells[3].source = "pass  # the student deleted the check"
    return write(student, tmp_path / f"{name}.ipynb")


@pytest.mark.slow
def test_grade_correct_submission_passes(tmp_path):
    source = write(fixture_notebook(), tmp_path / "notebooks" / "hw.ipynb")
    sub = submission(tmp_path, "right", "return np.sqrt(alpha_bar)")
    r = cli("grade", sub, "--source", source, "--output", tmp_path / "run.ipynb")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"scale\s+scale-check\s+1 / 1\s+pass", r.stdout)
    assert re.search(r"total\s+total-check\s+2 / 2\s+pass", r.stdout)
    assert re.search(r"total\s+3 / 3\s+\(2 of 2 checks pass\)", r.stdout)
    assert "BEGIN HIDDEN TESTS" in nbformat.read(tmp_path / "run.ipynb", as_version=4).cells[3].source


@pytest.mark.slow
def test_grade_wrong_submission_fails_the_hidden_test_with_its_hint(tmp_path):
    source = write(fixture_notebook(), tmp_path / "notebooks" / "hw.ipynb")
    # `return alpha_bar` passes the visible check (alpha_bar = 1) but not the hidden one
    sub = submission(tmp_path, "wrong", "return alpha_bar", tamper=True)
    r = cli("grade", sub, "--source", source)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"scale\s+scale-check\s+0 / 1\s+FAIL", r.stdout)
    assert "AssertionError: scale(alpha_bar=[0.25, 0.81]): 2 of 2 entries are off." in r.stdout
    assert "Hint: the mean of q(x_t|x_0) is sqrt(alpha_bar_t) x_0 (eq. 4)" in r.stdout
    assert re.search(r"total\s+2 / 3\s+\(1 of 2 checks pass\)", r.stdout)
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.slow
def test_grade_reports_unwritten_exercises(tmp_path):
    source = write(fixture_notebook(), tmp_path / "notebooks" / "hw.ipynb")
    untouched = write(homework.student_version(fixture_notebook(), "hw.ipynb"), tmp_path / "untouched.ipynb")
    results, other = homework.grade(untouched, source, timeout=120)
    assert [(r.name, r.passed) for r in results] == [("scale-check", False), ("total-check", False)]
    assert "you haven't written it yet" in results[0].hint and results[1].hint.startswith("NameError")
    assert other == ["cell 4 (total): NotImplementedError: Exercise total in hw.ipynb: write your solution here"]


# --------------------------------------------------------------------------------------------
# nbgrader compatibility (runs where nbgrader is installed)


def nbgrader_release(nb):
    """nbgrader's own ClearSolutions + ClearHiddenTests + ClearOutput on a copy of ``nb``."""
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (optional; `pip install nbgrader`)")
    from nbconvert.preprocessors import ClearOutputPreprocessor
    from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions

    out = nbformat.reads(nbformat.writes(nb), as_version=4)
    for pre in (ClearSolutions(), ClearHiddenTests(), ClearOutputPreprocessor()):
        out, _ = pre.preprocess(out, {})
    return out


def normalize_stubs(source: str) -> str:
    source = re.sub(r"(?m)^(\s*)# YOUR CODE HERE\n\s*raise NotImplementedError\(\)$", r"\1<STUB>", source)
    return re.sub(
        r"(?m)^(\s*)raise NotImplementedError\(\"Exercise .*: write your solution here\"\)$", r"\1<STUB>", source
    )


def assert_same_as_nbgrader(nb, name):
    ours, theirs = homework.student_version(nb, name), nbgrader_release(nb)
    assert len(ours.cells) == len(theirs.cells)
    for i, (a, b) in enumerate(zip(ours.cells, theirs.cells)):
        assert normalize_stubs(a.source) == normalize_stubs(b.source), f"{name} cell {i}"
        if a.cell_type == "code":
            assert a.outputs == b.outputs == [] and a.execution_count is b.execution_count is None


def test_student_version_matches_nbgrader_on_fixture():
    assert_same_as_nbgrader(fixture_notebook(), "hw.ipynb")


@pytest.mark.slow
def test_nbgrader_generate_assignment_agrees(tmp_path):
    """The real instructor command, on the fixture and every committed notebook."""
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (optional; `pip install nbgrader`)")
    course = tmp_path / "course"
    sources = {"hw.ipynb": fixture_notebook()} | {p.name: homework.read_notebook(p) for p in COMMITTED}
    for name, nb in sources.items():
        write(nb, course / "source" / "hw" / name)
    (course / "nbgrader_config.py").write_text('c = get_config()\nc.CourseDirectory.course_id = "edudiff"\n')
    # nbgrader runs its database migrations with the `alembic` script installed next to python
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "hw", "--force"],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for name, nb in sources.items():
        theirs = nbformat.read(course / "release" / "hw" / name, as_version=4)
        ours = homework.student_version(nb, name)
        assert [normalize_stubs(c.source) for c in ours.cells] == [normalize_stubs(c.source) for c in theirs.cells]


# --------------------------------------------------------------------------------------------
# The committed notebooks


@committed
def test_committed_notebook_markers_valid(path):
    nb = homework.read_notebook(path)
    problems = homework.check_notebook(nb, str(path.relative_to(REPO)))
    assert not problems, "\n".join(map(str, problems))
    warnings = homework.nbgrader_warnings(nb, str(path.relative_to(REPO)))
    assert not warnings, "nbgrader metadata:\n" + "\n".join(map(str, warnings))
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "stored with outputs"


@committed
def test_committed_notebook_student_version_compiles(path):
    student = homework.student_version(homework.read_notebook(path), path.name)
    for i, cell in enumerate(student.cells):
        if cell.cell_type == "code":
            compile_cell(cell.source, f"{path.name} cell {i} (student version)")


@committed
def test_committed_notebook_matches_nbgrader(path):
    assert_same_as_nbgrader(homework.read_notebook(path), path.name)


@pytest.mark.slow
@committed
def test_committed_student_version_fails_exactly_in_exercises(path):
    nb = homework.read_notebook(path)
    executed = homework.execute(homework.student_version(nb, path.name), cwd=path.parent, timeout=600)
    assert_fails_only_in_exercises(nb, executed, path.name)


# --------------------------------------------------------------------------------------------
# Integrity: a submission that merely calls edudiff's reference must fail every check

#: For every code exercise of the committed notebooks: a solution body that only calls the edudiff
#: function the notebook imports (what a student who did not do the exercise would write).
CHEATS = {
    "nb01_marginal_moments": (
        "from edudiff.toy import GaussianMixture\nm = GaussianMixture(weights, means, stds).marginal(schedule, t)\n"
        "return m.mean(), m.variance()"
    ),
    "nb02_q_sample": "return q_sample(schedule, x0, t, eps=eps)",
    "nb02_jump_between": (
        "sub = Schedule(schedule.betas[s + 1 : t + 1])\nreturn q_mean_var(sub, xs, torch.full(xs.shape, t - s))"
    ),
    "nb03_q_posterior": "return q_posterior(schedule, x0, xt, t)",
    "nb03_mean_from_eps": "return posterior_mean_from_eps(schedule, xt, t, eps)",
    "nb04_normal_kl": "return normal_kl(mean1, logvar1, mean2, logvar2)",
    "nb04_prior_kl": "return prior_kl(schedule, x0)",
    "nb04_l_t_minus_1": "return edudiff.l_t_minus_1(schedule, lambda x, tt: eps_hat, x0, xt, t, var_type='beta')",
    "nb04_decoder": "return edudiff.discretized_gaussian_log_likelihood(x, mean, log_scale)",
    "nb05_elbo_weights": (
        "from edudiff import elbo_weights\nlam = elbo_weights(schedule, 'beta')[t] * schedule.betas[t] / sigma2\n"
        "return lam, lam * schedule.alpha_bars[t] / (1 - schedule.alpha_bars[t])"
    ),
    "nb05_eps_from_score": "return bimodal.optimal_eps(schedule, xt, t)",
    "nb05_loss_simple": "return edudiff.loss_simple(schedule, model, x0, t=t, eps=eps)",
    "nb05_reverse_step": (
        "out = edudiff.p_mean_variance(schedule, model, xt, t, var_type=var_type)\nreturn out['mean'], out['variance']"
    ),
    "nb05_train_step": (
        "loss = edudiff.loss_simple(schedule, model, x0, generator=generator)\n"
        "optimizer.zero_grad()\nloss.backward()\noptimizer.step()\nreturn float(loss)"
    ),
    "nb05_sample": (
        "return edudiff.sample(schedule, model, shape=(n,), var_type='beta', dtype=torch.float64, generator=generator)"
    ),
    "nb06_ddim_step": (
        "tt = torch.full((xt.shape[0],), t, dtype=torch.long)\n"
        "x0 = edudiff.predict_x0_from_eps(schedule, xt, tt, eps_hat)\n"
        "return x0 if t_prev == 0 else edudiff.q_sample(schedule, x0, t_prev, eps=eps_hat)"
    ),
    "nb08_guided_eps": "return ClassifierFreeGuidance(model, y, s)(x, t)",
    "nb08_drop_labels": (
        "from edudiff.training.parts import drop_labels\nreturn drop_labels(y, p_uncond, null_label, generator, len(y))"
    ),
    "nb09_guided_mean": (
        "eps = eps_model(x, t)\nguide = ClassifierGuidance(eps_model, log_probs, y, s, schedule)\n"
        "return edudiff.posterior.posterior_mean_from_eps(schedule, x, t, eps) + s * schedule.betas[t] * "
        "guide.class_gradient(x, t)"
    ),
    "nb09_replace": (
        "tt = torch.full((x_prev.shape[0],), max(t_prev, 1))\n"
        "return mask * edudiff.q_sample(schedule, x0_known, tt, generator=generator) + (1 - mask) * x_prev"
    ),
    "nb07_ema_weights": (
        "K = len(decays)\none_hot = lambda i: torch.nn.ParameterList(\n"
        "    [torch.nn.Parameter(torch.eye(K + 1, dtype=torch.float64)[i], requires_grad=False)])\n"
        "ema = one_hot(0)\nfor k, d in enumerate(decays):\n    ema_update(ema, one_hot(k + 1), float(d))\n"
        "return float(ema[0][0]), ema[0].detach()[1:]"
    ),
}


def code_exercises(nb) -> list[str]:
    return [homework.markers.grade_id_of(nb.cells[i]) for i in solution_cells(nb)]


def cheating_version(nb, name, cheats=CHEATS):
    """The instructor notebook with every code solution replaced by its ``cheats`` body (checks and hidden
    tests kept, as `grade` runs them), cut after the last check cell (later cells only cost time)."""
    cheat = homework.student_version(nb, name, replacements=cheats)
    checks = exercise_checks(nb)
    for i in checks:
        cheat.cells[i].source = nb.cells[i].source
    cheat.cells = cheat.cells[: max(checks) + 1] if checks else cheat.cells
    return cheat


@committed
def test_every_committed_exercise_has_a_cheat_to_fail(path):
    missing = [gid for gid in code_exercises(homework.read_notebook(path)) if gid not in CHEATS]
    assert not missing, f"{path.name}: add a cheating body for {missing} to CHEATS"


@pytest.mark.slow
@committed
def test_committed_checks_fail_a_submission_that_calls_the_reference(path):
    assert_every_check_fails_with_the_integrity_message(path, CHEATS)


#: Cheats that went round the checks while they only swapped names (issue 21, section 3), on one notebook:
#: the reference reached through the stub that replaced its name, and a table edudiff precomputed read off the
#: schedule. (Aliases made before the block and modules a check left open: tests/test_checks.py.)
CHEATS_BYPASS = {
    "nb03_q_posterior": "f = getattr(q_posterior, '__wrapped_reference__', q_posterior)\nreturn f(schedule, x0, xt, t)",
    "nb03_mean_from_eps": (
        "return (xt - schedule.betas[t] / schedule.sqrt_one_minus_alpha_bars[t] * eps) / schedule.sqrt_alphas[t]"
    ),
}


@pytest.mark.slow
def test_committed_checks_fail_a_submission_that_goes_round_the_block():
    assert_every_check_fails_with_the_integrity_message(REPO / "notebooks" / "03_posterior.ipynb", CHEATS_BYPASS)


def assert_every_check_fails_with_the_integrity_message(path, cheats):
    nb = homework.read_notebook(path)
    assert set(code_exercises(nb)) <= set(cheats), f"{path.name}: every exercise needs a cheat"
    executed = homework.execute(cheating_version(nb, path.name, cheats), cwd=path.parent, timeout=600)
    errors, checks = cell_errors(executed), exercise_checks(nb)
    wrong = [
        f"cell {i} ({'check' if i in checks else 'ordinary'} cell) raised {name}: {msg.splitlines()[0] if msg else ''}"
        for i, (name, msg) in sorted(errors.items())
        if i not in checks or name not in ("ReferenceUsed", "AssertionError") or INTEGRITY_MESSAGE not in msg
    ]
    wrong += [f"check cell {i} passes a submission that only calls edudiff" for i in checks if i not in errors]
    assert not wrong, f"{path.name}:\n" + "\n".join(wrong)


INTEGRITY_EXERCISE = """def my_kl(m1, lv1, m2, lv2):
    ### BEGIN SOLUTION
    return 0.5 * (-1 + lv2 - lv1 + (lv1 - lv2).exp() + (m1 - m2) ** 2 * (-lv2).exp())
    ### END SOLUTION"""
INTEGRITY_CHECK = """args = [torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.5]),
        torch.tensor([1.0, 1.0]), torch.tensor([1.3, 0.0])]
want = normal_kl(*args)
check_own_work("my_kl", my_kl, normal_kl)
with references_blocked(normal_kl):
    check_close("my_kl(two pairs)", lambda: my_kl(*args), want, hint="eq. for the Gaussian KL")"""


def integrity_notebook():
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_code_cell(
            "import torch\nfrom edudiff import normal_kl\n"
            "from edudiff.course.checks import check_close, check_own_work, references_blocked"
        ),
        new_code_cell(INTEGRITY_EXERCISE, metadata=solution_meta("kl")),
        new_code_cell(INTEGRITY_CHECK, metadata=check_meta("kl-check")),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"k{i}"
    return nb


@pytest.mark.slow
@pytest.mark.parametrize(
    "body, message",
    [
        ("return normal_kl(m1, lv1, m2, lv2)", "your function called edudiff.normal_kl"),
        (
            "import edudiff.elbo\n    return edudiff.elbo.normal_kl(m1, lv1, m2, lv2)",
            "your function called edudiff.normal_kl",
        ),
        (None, "my_kl is edudiff.normal_kl itself"),
        ("return 0.5 * (-1 + lv2 - lv1 + (lv1 - lv2).exp() + (m1 - m2) ** 2 * (-lv2).exp())", None),
    ],
)
def test_grade_fails_a_submission_that_calls_or_is_the_reference(tmp_path, body, message):
    source = write(integrity_notebook(), tmp_path / "notebooks" / "kl.ipynb")
    student = homework.student_version(integrity_notebook(), "kl.ipynb")
    if body is None:  # the function bound to the reference
        student.cells[1].source = "my_kl = normal_kl"
    else:
        student.cells[1].source = re.sub(r"raise NotImplementedError\(.*\)", body, student.cells[1].source)
    r = cli("grade", write(student, tmp_path / "sub.ipynb"), "--source", source)
    if message is None:
        assert r.returncode == 0 and re.search(r"kl\s+kl-check\s+1 / 1\s+pass", r.stdout), r.stdout + r.stderr
    else:
        assert r.returncode == 1 and re.search(r"kl\s+kl-check\s+0 / 1\s+FAIL", r.stdout), r.stdout + r.stderr
        assert message in r.stdout and INTEGRITY_MESSAGE in r.stdout, r.stdout


def test_replacements_fill_solution_regions_indented_like_the_begin_line():
    nb = fixture_notebook()
    out = homework.student_version(nb, "hw.ipynb", replacements={"scale": "r = 2\nreturn r", "total": "total = 3"})
    assert out.cells[2].source.endswith('"""\n    r = 2\n    return r')
    assert "        total = 3\n" in out.cells[4].source and "BEGIN HIDDEN" not in out.cells[3].source
    assert out.cells[6].source == "Why?\nYOUR ANSWER HERE\nThanks."  # markdown answers still get the stub
    compile(out.cells[2].source, "scale", "exec")
