"""docs/build_site.py: Sphinx is strict (a Sphinx or docutils warning fails the build: a tiny Sphinx project with
and without one; needs the `site` extra, which make test-site installs), and a notebook whose kernel stops
answering is executed once more, while one that really hangs fails."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.site
REPO = Path(__file__).resolve().parent.parent


def _build_site_module():
    spec = importlib.util.spec_from_file_location("edudiff_build_site", REPO / "docs" / "build_site.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _project(path: Path, body: str) -> Path:
    path.mkdir()
    (path / "conf.py").write_text("project = 'strictness check'\nextensions = []\n", encoding="utf-8")
    (path / "index.rst").write_text(f"Title\n=====\n\n{body}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "body, fails",
    [
        ("A paragraph.\n\n* a list\n* of two items\n", False),
        # what the site's build printed for edudiff.training.trainer.train's docstring before issue 22, and went on
        ("a paragraph,\nits second line,\n    then a line indented more: docutils says Unexpected indentation\n", True),
    ],
)
def test_a_docutils_warning_fails_the_build(tmp_path, body, fails):
    pytest.importorskip("sphinx", reason="the site tools are missing: make test-site installs .[site]")
    src = _project(tmp_path / "src", body)
    done = subprocess.run(
        _build_site_module().sphinx_command(src, tmp_path / "out"), capture_output=True, text=True, timeout=300
    )
    assert (done.returncode != 0) == fails, done.stdout + done.stderr
    if fails:
        assert "Unexpected indentation" in done.stderr


def _notebook(path: Path, source: str) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(cells=[new_markdown_cell("# control"), new_code_cell(source), new_code_cell("y = 2")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


@pytest.mark.slow
def test_a_timed_out_notebook_runs_once_more_and_a_hanging_one_fails(tmp_path, monkeypatch, capsys):
    from nbclient.exceptions import CellTimeoutError

    bs = _build_site_module()
    monkeypatch.setattr(bs, "CELL_TIMEOUT", 8)
    flag = tmp_path / "first-run"
    # hangs on the first run only (as a kernel that stopped answering), passes on the second
    once = _notebook(
        tmp_path / "once.ipynb",
        f"import os, time\nif not os.path.exists({str(flag)!r}):\n    open({str(flag)!r}, 'w').close()\n"
        "    time.sleep(120)\nx = 1",
    )
    nb = bs.execute(once, tmp_path, {}, tmp_path / "cache", "d", force=True)
    assert flag.exists() and nb.cells[2].execution_count == 2
    assert "CellTimeoutError" in capsys.readouterr().out
    hangs = _notebook(tmp_path / "hangs.ipynb", "import time\ntime.sleep(120)")
    with pytest.raises(CellTimeoutError):
        bs.execute(hangs, tmp_path, {}, tmp_path / "cache", "d", force=True)
    assert capsys.readouterr().out.count("executing it again") == bs.ATTEMPTS - 1
