"""Build the course website (`make site`): the notebooks as student versions, executed, plus a home
page, the API reference and the instructor guide, rendered by Sphinx + myst-nb into a static, offline site.

Steps (everything lands under build/; nothing in the repository is modified):

1. `python -m edudiff homework student notebooks build/site-src/student` writes the student versions
   (solutions replaced by stubs, hidden tests removed): the site never sees a solution.
2. Each student notebook is executed with nbclient, in a copy of notebooks/ as working folder:
   01-05 in full mode, 06, 08 and 09 with the course's pretrained weights (EDUDIFF_PRETRAINED=1), 07 with
   EDUDIFF_FAST=1.
   The exercise cells (nbgrader `solution`) and their check
   cells (nbgrader `grade`) are tagged `raises-exception` in the copy, so only they may fail, and only with
   NotImplementedError / AssertionError / NameError (what a student version raises there, as
   tests/test_homework.py checks); any other error, or an error in any other cell, fails the build.
   Their tracebacks are shortened to the one line a student needs. Executed notebooks are cached
   (build/site-src/exec-cache/), keyed on the student notebook, the mode and the package's sources.
3. Widget outputs (application/vnd.jupyter.widget-view+json) and the stored widget state are removed: every
   slider's figure is also drawn by a direct call of the plotting function, which stays. A note goes on the
   fast-mode and pretrained-weights pages, and a link to the notebook (the student version, shipped in the site)
   on every page.
4. The Sphinx sources (docs/*.md, docs/conf.py, one API page per module, the executed notebooks) are put
   together in build/site-src/src, MathJax is unpacked from its npm tarball into _static/mathjax, and
   `sphinx-build -W` writes build/site: a Sphinx or docutils warning fails the build.

    python docs/build_site.py --mathjax build/site-cache/mathjax.tgz [--out build/site] [--force]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import os
import pkgutil
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's edudiff, whatever the environment's install points at
DOCS = REPO / "docs"
NOTEBOOKS = REPO / "notebooks"
#: The environment each notebook runs in on the site (the others: full mode, EDUDIFF_FAST unset).
SITE_ENV = {
    "06_unet_mnist": {"EDUDIFF_PRETRAINED": "1"},
    "07_cifar10": {"EDUDIFF_FAST": "1"},
    "08_conditional_guidance": {"EDUDIFF_PRETRAINED": "1"},
    "09_guiding_trained_models": {"EDUDIFF_PRETRAINED": "1"},
}
ALLOWED_ERRORS = {"NotImplementedError", "AssertionError", "NameError"}  # in exercise and check cells only
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
REEXPORTING_MODULES = ("edudiff", "edudiff.data", "edudiff.nn", "edudiff.images", "edudiff.training", "edudiff.course")
#: Seconds per cell (notebook 08 with the shipped weights took 17 minutes in all on 2 busy cores, most in one cell),
#: and how often a notebook is executed
#: before its failure counts: on a heavily loaded machine a kernel has been seen to stop answering after a widget
#: cell (it had run the cell and sat idle, the reply never arrived), so a cell that times out, or a kernel that
#: dies, gets the notebook one more run, with a line saying so. A cell that really hangs fails both.
CELL_TIMEOUT = 1200
ATTEMPTS = 2

FAST_NOTE = """```{note}
**Run in fast mode.** This page was executed with `EDUDIFF_FAST=1`: the model is the small, CPU-sized one the
tests train in a few minutes, so the samples and numbers below are far from what the full configuration reaches
on a GPU.
```"""
PRETRAINED_NOTE = """```{{note}}
**Run with the course's weights.** This page was executed with `EDUDIFF_PRETRAINED=1`: instead of training, it loads
the weights shipped with the package (`edudiff.pretrained.load("{weights}")`, trained on a CPU; see the
model card `edudiff/pretrained/{weights}.md`), then samples and scores them. Unset the variable to train them yourself.
```"""
#: The shipped weights each pretrained page loads.
PRETRAINED_WEIGHTS = {
    "06_unet_mnist": "mnist",
    "08_conditional_guidance": "mnist_cond",
    "09_guiding_trained_models": "mnist",
}


def log(msg: str) -> None:
    print(f"[site] {msg}", flush=True)


def is_exercise_or_check(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("solution") or meta.get("grade"))


def elide_solutions(lines: list[str]) -> list[str]:
    """Lines with every `### BEGIN SOLUTION` ... `### END SOLUTION` region's content replaced by one `...` line
    (markers kept): for README/DEVELOPERS parts and docstrings shown on the site, whose examples are real
    exercises' solutions (e.g. the README's nb02_q_sample)."""
    out, inside = [], False
    for line in lines:
        s = line.strip()
        if s == "### END SOLUTION":
            inside = False
        elif inside:
            continue
        out.append(line)
        if s == "### BEGIN SOLUTION":
            inside = True
            out.append(line[: len(line) - len(line.lstrip())] + "...  # the solution (never shown on the website)")
    return out


def tag_exercises(nb) -> int:
    """Tag exercise and check cells `raises-exception` (nbclient then lets only them fail)."""
    n = 0
    for cell in nb.cells:
        if is_exercise_or_check(cell):
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")
            n += 1
    return n


def sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((REPO / "edudiff").rglob("*.py")):
        h.update(str(p.relative_to(REPO)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def execute(student: Path, workdir: Path, env: dict, cache: Path, digest: str, force: bool):
    """The executed notebook (from the cache when its key matches)."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from edudiff.course.homework.grading import notebook_client

    key = hashlib.sha256(student.read_bytes() + f"env={sorted(env.items())}".encode() + digest.encode()).hexdigest()
    cached = cache / student.name
    if cached.exists() and not force:
        nb = nbformat.read(str(cached), as_version=4)
        if nb.metadata.get("edudiff_site", {}).get("key") == key:
            log(f"{student.name}: executed copy reused from the cache")
            return nb
    saved = {k: os.environ.get(k) for k in ("EDUDIFF_FAST", "EDUDIFF_PRETRAINED")}
    for k in saved:
        os.environ.pop(k, None)
    os.environ.update(env)
    t0 = time.monotonic()
    n_cells = len(nbformat.read(str(student), as_version=4).cells)
    try:
        for attempt in range(1, ATTEMPTS + 1):
            nb = nbformat.read(str(student), as_version=4)
            n_tagged = tag_exercises(nb)
            log(f"{student.name}: executing ({env or 'full mode'}, {n_tagged} exercise/check cells may fail)")
            client = notebook_client(  # its Output widgets never write to the kernel mid-cell (see there)
                nb,
                timeout=CELL_TIMEOUT,
                kernel_name="python3",
                allow_errors=False,
                resources={"metadata": {"path": str(workdir)}},
                on_cell_executed=lambda cell, cell_index, **kw: (
                    log(f"{student.name}: cell {cell_index + 1}/{n_cells}")
                    if cell.cell_type == "code" and os.environ.get("EDUDIFF_SITE_VERBOSE")
                    else None
                ),
            )
            try:
                client.execute()  # raises CellExecutionError for an error in an untagged cell
                break
            except (CellTimeoutError, DeadKernelError) as err:
                if attempt == ATTEMPTS:
                    raise
                reason = str(err).strip().split("\n")[0]
                log(f"{student.name}: {type(err).__name__}: {reason}; executing it again ({attempt + 1}/{ATTEMPTS})")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    check_errors(nb, student.name)
    log(f"{student.name}: executed in {time.monotonic() - t0:.0f} s")
    nb.metadata["edudiff_site"] = {"key": key, "env": env}
    cache.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(cached))
    return nb


def check_errors(nb, name: str) -> None:
    """Errors are allowed only in tagged cells, and only of the kinds a student version raises there."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if "raises-exception" not in cell.metadata.get("tags", []) or out.get("ename") not in ALLOWED_ERRORS:
                raise SystemExit(f"{name}, cell {i}: unexpected {out.get('ename')}: {out.get('evalue')}")


def prepare_page(nb, name: str, env: dict):
    """Strip widgets, shorten the exercise tracebacks, add the notebook link (and the note on the mode it ran in)."""
    from nbformat.v4 import new_markdown_cell

    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if WIDGET_MIME in out.get("data", {}):
                continue  # a slider: its static figure is drawn by the direct call of the same function
            if out.get("output_type") == "error":
                out["traceback"] = [f"{out['ename']}: {out['evalue']}"]
            outputs.append(out)
        cell.outputs = outputs
    link = (
        f"*This page is the notebook `notebooks/{name}` of the course repository, executed, as a student gets it:"
        f" the exercises are left for you, so their check cells stop with an error (`NotImplementedError` or"
        f" `AssertionError`) until you write them. Download the notebook: {{download}}`{name}"
        f" <../_notebook_files/{name}>`, and run it with `make lab`.*"
    )
    extra = [new_markdown_cell(link)]
    if env.get("EDUDIFF_FAST") == "1":
        extra.append(new_markdown_cell(FAST_NOTE))
    if env.get("EDUDIFF_PRETRAINED") == "1":
        extra.append(new_markdown_cell(PRETRAINED_NOTE.format(weights=PRETRAINED_WEIGHTS[Path(name).stem])))
    for c in extra:
        c.metadata["tags"] = ["edudiff-site"]
    nb.cells[1:1] = extra
    return nb


def write_api_pages(src: Path) -> None:
    import edudiff

    api = src / "api"
    api.mkdir(parents=True, exist_ok=True)
    names = ["edudiff"] + sorted(
        m.name for m in pkgutil.walk_packages(edudiff.__path__, "edudiff.") if not m.name.endswith("__main__")
    )
    lines = [
        "# The package `edudiff`: API reference",
        "",
        "Generated from the docstrings, which carry the paper's equations (with their numbers), the shapes",
        "and the notebook that teaches each function.",
        "",
        "```{toctree}",
        ":maxdepth: 1",
        "",
    ]
    for name in names:
        lines.append(name)
        # edudiff and its layer packages gather names documented in their own modules: their docstrings only
        opts = "" if name in REEXPORTING_MODULES else "   :members:\n   :show-inheritance:\n"
        (api / f"{name}.md").write_text(
            f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n{opts}```\n", encoding="utf-8"
        )
    lines.append("```")
    (api / "index.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def unpack_mathjax(tgz: Path, static: Path) -> None:
    """MathJax 3's es5/ folder (tex-chtml.js, its fonts and extensions) into _static/mathjax."""
    dest = static / "mathjax"
    if dest.exists():
        shutil.rmtree(dest)
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/es5/") and (m.isfile() or m.isdir())]
        for m in members:
            m.name = m.name[len("package/es5/") :]
        tar.extractall(dest, members=[m for m in members if m.name], filter="data")
    if not (dest / "tex-chtml.js").exists():
        raise SystemExit(f"{tgz}: no es5/tex-chtml.js inside; expected the npm package mathjax@3")


def sphinx_command(src: Path, out: Path) -> list[str]:
    """sphinx-build, quiet, from scratch (-E), and strict: -W makes every Sphinx or docutils warning an error
    (--keep-going: all of them are reported before it fails, not only the first)."""
    return [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-W", "--keep-going", str(src), str(out)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mathjax", type=Path, required=True, help="the npm tarball of mathjax@3 (npm pack mathjax@3)")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "site")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "site-src")
    ap.add_argument("--force", action="store_true", help="re-execute every notebook (ignore the cache)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    import nbformat

    work = args.work
    student = work / "student"
    if student.exists():
        shutil.rmtree(student)
    # 1. Student versions, through the homework CLI.
    subprocess.run([sys.executable, "-m", "edudiff", "homework", "student", str(NOTEBOOKS), str(student)], check=True)
    # 2. Execute them in a copy of notebooks/ (the notebooks' working folder; files they write stay in build/).
    run_dir = work / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    shutil.copytree(NOTEBOOKS, run_dir)
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    shutil.copytree(student, src / "_notebook_files")  # the downloads: student versions, without outputs
    digest = sources_digest()
    for nb_path in sorted(student.glob("*.ipynb")):
        env = SITE_ENV.get(nb_path.stem, {})
        nb = execute(nb_path, run_dir, env, work / "exec-cache", digest, args.force)
        nbformat.write(prepare_page(nb, nb_path.name, env), str(src / "notebooks" / nb_path.name))
    # 3. The rest of the Sphinx sources.
    for p in DOCS.iterdir():
        if p.suffix in (".md", ".py", ".svg") and p.name != "build_site.py":
            shutil.copy2(p, src / p.name)
    (src / "_repo").mkdir()
    for name in ("README.md", "DEVELOPERS.md"):  # included in parts by index.md and instructor.md
        text = (REPO / name).read_text(encoding="utf-8")
        (src / "_repo" / name).write_text("\n".join(elide_solutions(text.split("\n"))), encoding="utf-8")
    write_api_pages(src)
    unpack_mathjax(args.mathjax, src / "_static")
    # 4. Sphinx.
    if args.out.exists():
        shutil.rmtree(args.out)
    cmd = sphinx_command(src, args.out)
    log(" ".join(cmd))
    done = subprocess.run(cmd, env={**os.environ, "EDUDIFF_REPO": str(REPO)})
    if done.returncode:
        raise SystemExit(
            f"sphinx-build failed (exit status {done.returncode}); every warning above is an error: fix its source "
            "(a docstring in edudiff/, a page in docs/, a notebook's markdown, README.md / DEVELOPERS.md)"
        )
    log(f"site written to {args.out} in {time.monotonic() - t0:.0f} s; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
