"""The control notebook of the browser tests: its first cells must pass every check, its last cells
carry known failures the checks must report (so a green run means the checks can see failures)."""

from __future__ import annotations

from pathlib import Path

# The control notebook: cell 0 is markdown, cells 1-6 (code) must pass every check, cells 7-10 each carry one
# known failure. Cells are numbered 0-based, as in nb.cells.
CONTROL_EXPECTED_PROBLEMS = {
    7: "figure-unchanged",  # a slider whose figure ignores it
    8: "widget-not-rendered",  # a widget output whose model does not exist ("model not found")
    9: "error-output",  # a traceback
    10: "not-executed",  # never reached: Run All stops at the error
}
CONTROL_GOOD_WIDGETS = 2  # cells 3 and 4: IntSlider and FloatSlider driving figures


def write_fixture_notebook(path: Path) -> Path:
    """Write the small control notebook, in the course's slider pattern: a plain plotting function
    called directly (static figure), then shown through `ipywidgets.interactive(plot_fn,
    t=IntSlider(...))` and a FloatSlider version, an empty cell, an assert; then the negative
    controls listed in CONTROL_EXPECTED_PROBLEMS (cell indices, 0-based as in nb.cells)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [
        new_markdown_cell(
            "# Browser-test control notebook\nSliders drive matplotlib figures; the last "
            "cells fail on purpose, so the test can see that its checks catch failures."
        ),
        # cell 1
        new_code_cell(
            "%matplotlib inline\n"
            "import numpy as np\n"
            "import matplotlib.pyplot as plt\n"
            "import ipywidgets as widgets\n"
            "from IPython.display import display"
        ),
        # cell 2
        new_code_cell(
            "def plot_wave(t):\n"
            "    x = np.linspace(0.0, 1.0, 400)\n"
            "    fig, ax = plt.subplots(figsize=(5, 3))\n"
            "    ax.plot(x, np.sin(2 * np.pi * t * x))\n"
            "    ax.set_xlabel('x'); ax.set_ylabel('sin(2 pi t x)'); ax.set_title(f't = {t}')\n"
            "    plt.show()\n\n"
            "plot_wave(3)"
        ),
        # cell 3
        new_code_cell(
            "w_int = widgets.interactive(plot_wave, t=widgets.IntSlider(min=1, max=10, value=3, description='t'))\n"
            "display(w_int)"
        ),
        # cell 4 (starts at its maximum: the test must fall back to ArrowLeft)
        new_code_cell(
            "def plot_gauss(sigma):\n"
            "    x = np.linspace(-4.0, 4.0, 400)\n"
            "    fig, ax = plt.subplots(figsize=(5, 3))\n"
            "    ax.plot(x, np.exp(-x**2 / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi)))\n"
            "    ax.set_xlabel('x'); ax.set_ylabel('density'); ax.set_title(f'sigma = {sigma:.2f}')\n"
            "    plt.show()\n\n"
            "display(widgets.interactive(plot_gauss, sigma=widgets.FloatSlider(min=0.2, max=2.0, step=0.1, value=2.0)))"
        ),
        # cell 5: empty -- JupyterLab leaves it unnumbered, the checks must allow that
        new_code_cell(""),
        # cell 6
        new_code_cell("assert w_int.children[0].value >= 1, 'the slider value is a timestep t >= 1'"),
        # cell 7: negative control -- the figure ignores the slider
        new_code_cell(
            "def constant_plot(t):\n"
            "    fig, ax = plt.subplots(figsize=(4, 3))\n"
            "    ax.plot([0, 1], [0, 1]); ax.set_xlabel('x'); ax.set_ylabel('y'); ax.set_title('ignores t')\n"
            "    plt.show()\n\n"
            "display(widgets.interactive(constant_plot, t=widgets.IntSlider(min=1, max=5, value=2)))"
        ),
        # cell 8: negative control -- what a student sees as "Error displaying widget: model not found"
        new_code_cell(
            "display({'application/vnd.jupyter.widget-view+json':\n"
            "         {'model_id': '0123456789abcdef0123456789abcdef', 'version_major': 2, 'version_minor': 0},\n"
            "         'text/plain': 'a widget whose model does not exist'}, raw=True)"
        ),
        # cell 9: negative control -- a traceback
        new_code_cell("raise ValueError('deliberate error: negative control of the browser test')"),
        # cell 10: negative control -- never executed
        new_code_cell("never_reached = True"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
