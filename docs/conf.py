"""Sphinx configuration of the course website (built by `make site` / docs/build_site.py, which copies this file
into build/site-src/src next to the executed notebooks). Everything the pages need is served from the site itself:
no CDN, no remote theme, MathJax from _static/mathjax (unpacked from the npm package by build_site.py)."""

import os
import sys

REPO = os.environ.get("EDUDIFF_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
sys.path.insert(0, REPO)  # autodoc documents this checkout's edudiff
sys.path.insert(0, os.path.join(REPO, "docs"))
from build_site import elide_solutions  # noqa: E402

project = "edudiff — denoising diffusion, checked by numbers"
author = "the edudiff authors"
copyright = "the edudiff authors; code MIT, text CC BY 4.0"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "_repo", "_notebook_files", "**.ipynb_checkpoints"]
suppress_warnings = ["myst.header"]  # included README parts start at ### below a page's #

# MyST: $...$ and $$...$$ in the notebooks' markdown, amsmath environments.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
myst_dmath_double_inline = True  # $$...$$ inside a paragraph or list item, as JupyterLab renders it

# myst-nb: the notebooks are executed by build_site.py (student versions, errors only in exercise cells);
# here they are only rendered. No widget JavaScript from a CDN: the widget outputs are stripped.
nb_execution_mode = "off"
nb_ipywidgets_js = {}
nb_merge_streams = True

# MathJax 3, bundled: a path relative to html_static_path.
mathjax_path = "mathjax/tex-chtml.js"

# The docstrings' "Args:" / "Raises:" sections are Google style: napoleon turns them into parameter lists (read as
# plain reST they are definition lists that docutils warns about, and warnings fail the build).
napoleon_google_docstring = True
napoleon_numpy_docstring = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_favicon = "favicon.svg"  # also spares the browser a 404 for /favicon.ico
html_title = "edudiff"
html_static_path = ["_static"]
html_copy_source = False  # no _sources/: the site stays small
html_show_sourcelink = False


def setup(app):
    # Load MathJax on every page, not only on pages with equations: the navigation shows the notebooks' titles,
    # which hold math ($q(x_t|x_0)$), on every page.
    app.set_html_assets_policy("always")
    # Docstrings show the homework markers with an example solution: elide it, as on every page of the site.
    app.connect("autodoc-process-docstring", lambda app, what, name, obj, options, lines: _elide(lines))


def _elide(lines):
    lines[:] = elide_solutions(lines)
