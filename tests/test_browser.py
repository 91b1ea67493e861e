"""The course as a student meets it: JupyterLab in a real (headless) Chromium, widgets live.

nbval proves the kernels run; these tests look at the page. For each concept notebook
(notebooks/0[1-5]_*.ipynb) the test starts JupyterLab the way `make lab` does
(`.venv/bin/jupyter lab --notebook-dir=notebooks --port=...`, plus 127.0.0.1, a token, --no-browser
and throw-away Jupyter config/data/runtime dirs), opens the notebook in headless Chromium, runs
Run > Run All Cells, waits until the kernel is idle and checks what a student would see:

- every non-empty code cell got an execution count, and no output shows a traceback;
- every widget output renders as a live widget (no "Error displaying widget: model not found",
  no "Loading widget..." left, no widget shown as its text repr) and at least as many
  `.widget-slider` views appear as the source constructs sliders;
- for every widget with a slider: ArrowRight (ArrowLeft at the maximum) on the focused slider handle
  changes the slider's value *and* the figure it drives (the <img> PNG data in the widget's output).

Screenshots (whole notebook after the run; each slider widget before/after the move) go to
build/browser-screenshots/ (or $EDUDIFF_SCREENSHOTS); the path is printed in pytest's summary.

A small control notebook written to a temporary dir is part of the suite: its first cells follow
the course's slider pattern and must pass every check; its last cells carry known failures (a slider
that does not change its figure, a widget whose model does not exist, a traceback, a cell never
reached) that the checks must report -- so a green run means the checks can see failures, not
merely that they found none.

Needs Chromium (`.ci/install_browser.sh`, or `sudo apt-get install chromium`; elsewhere set
EDUDIFF_CHROMIUM=/path/to/chrome) and the `playwright` Python package (no `playwright install`: the
system Chromium is used). Without them the tests skip with a message. Deselect with -m "not browser".
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import browser as bh
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
CONCEPT_NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("0[1-5]_*.ipynb"))
RUN_TIMEOUT = float(os.environ.get("EDUDIFF_BROWSER_TIMEOUT", "300"))  # seconds per notebook
CONTROL_NOTEBOOK = "browser_control.ipynb"


# --------------------------------------------------------------------------------------------
# Reporting: the screenshot folder and one line per notebook in pytest's terminal summary
# --------------------------------------------------------------------------------------------
class _Summary:
    def __init__(self, shots: Path):
        self.shots = shots
        self.reports: list[bh.NotebookReport] = []
        self.servers: list[str] = []

    def pytest_terminal_summary(self, terminalreporter):
        tr = terminalreporter
        tr.section("browser tests (JupyterLab in headless Chromium)")
        for s in self.servers:
            tr.write_line(s)
        for r in self.reports:
            tr.write_line(
                r.summary().splitlines()[0] + ("" if not r.problems else f"  -- {len(r.problems)} problem(s)")
            )
        if self.reports:
            total = sum(r.seconds_total for r in self.reports)
            tr.write_line(f"browser time over {len(self.reports)} notebook(s): {total:.1f} s")
        n = len(list(self.shots.glob("*.png"))) if self.shots.is_dir() else 0
        tr.write_line(f"browser screenshots ({n} files): {self.shots}")


@pytest.fixture(scope="session")
def screenshots(request) -> _Summary:
    shots = Path(os.environ.get("EDUDIFF_SCREENSHOTS", REPO / "build" / "browser-screenshots")).resolve()
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):  # only this run's pictures (and only files named as ours)
        if bh.SCREENSHOT_NAME.match(old.name):
            old.unlink()
    summary = _Summary(shots)
    pm = request.config.pluginmanager
    if pm.has_plugin("edudiff-browser-summary"):  # pytest.main() called twice in one process
        pm.unregister(name="edudiff-browser-summary")
    pm.register(summary, "edudiff-browser-summary")
    print(f"\nbrowser screenshots: {shots}")
    return summary


# --------------------------------------------------------------------------------------------
# Browser and servers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser():
    chromium = bh.find_chromium()
    if chromium is None:
        where = (
            f"EDUDIFF_CHROMIUM={os.environ['EDUDIFF_CHROMIUM']} is not an executable"
            if os.environ.get("EDUDIFF_CHROMIUM")
            else "no Chromium at /usr/bin/chromium or on PATH (chromium, google-chrome)"
        )
        pytest.skip(
            f"browser test skipped: {where}. Install it with `.ci/install_browser.sh` "
            "(Debian/Ubuntu: `sudo apt-get install chromium`) or point EDUDIFF_CHROMIUM at a Chrome/Chromium."
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="browser test skipped: the `playwright` Python package is missing "
        "(pip install -e '.[test]'; no `playwright install` needed, the system Chromium is used)",
    )
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=chromium, args=bh.CHROMIUM_ARGS, timeout=60_000)
        except Exception as exc:  # any launch failure: skip with its message
            pytest.fail(
                f"Chromium at {chromium} is installed but does not start under Playwright: {exc}\n"
                f"(deselect the browser tests with -m 'not browser')",
                pytrace=False,
            )
        yield b
        b.close()


@pytest.fixture(scope="session")
def lab_servers(browser, screenshots, tmp_path_factory):
    """Both JupyterLab servers, started side by side: the course's (over notebooks/, `make lab`'s
    command plus the test arguments) and the control notebook's (over a temporary dir)."""
    control_root = tmp_path_factory.mktemp("browser-control-notebook")
    bh.write_fixture_notebook(control_root / CONTROL_NOTEBOOK)
    servers = {"control": bh.LabServer(control_root)}
    if CONCEPT_NOTEBOOKS:
        servers["course"] = bh.LabServer(NOTEBOOK_DIR, cwd=REPO)
    for server in servers.values():
        server.launch()
    try:
        for label, server in servers.items():
            server.wait_started()
            screenshots.servers.append(
                f"{label} server: `{' '.join(server.command)}` up in {server.startup_seconds:.1f} s"
            )
            # one browser context per server: its pages share the login cookie and the HTTP cache
            server.browser_context = browser.new_context(viewport=bh.VIEWPORT)
    except RuntimeError as exc:
        for server in servers.values():
            server.cleanup()
        pytest.fail(str(exc), pytrace=False)
    yield servers
    for server in servers.values():
        if hasattr(server, "browser_context"):
            server.browser_context.close()
        server.cleanup()


def _check(browser, server, name, summary: _Summary, **kw) -> bh.NotebookReport:
    rep = bh.check_notebook(browser, server, name, summary.shots, context=server.browser_context, **kw)
    summary.reports.append(rep)
    print(rep.summary())
    return rep


@pytest.fixture(scope="session")
def control_report(browser, lab_servers, screenshots) -> bh.NotebookReport:
    """The control notebook, run once in the browser (short waits: its failures are deliberate)."""
    return _check(
        browser,
        lab_servers["control"],
        CONTROL_NOTEBOOK,
        screenshots,
        run_timeout=120,
        widget_timeout=10,
        figure_timeout=5,
    )


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def test_widgets_render_and_sliders_redraw_figures(control_report):
    """The widget front end works at all: the installed JupyterLab + jupyterlab_widgets render
    ipywidgets.interactive sliders, and moving each redraws its matplotlib figure (control notebook,
    cells 1-6)."""
    rep = control_report
    good = [p for p in rep.problems if p.cell not in bh.CONTROL_EXPECTED_PROBLEMS]
    assert not good, "the working part of the control notebook fails in the browser:\n" + rep.summary()
    moves = rep.slider_moves[: bh.CONTROL_GOOD_WIDGETS]
    assert len(moves) == bh.CONTROL_GOOD_WIDGETS and all(m.endswith("(changed)") for m in moves), (
        "the IntSlider and FloatSlider of cells 3-4 should each redraw their figure\n" + rep.summary()
    )
    assert "ArrowLeft" in moves[1], (
        "the FloatSlider starts at its maximum: expected the ArrowLeft fallback\n" + rep.summary()
    )
    assert rep.n_sliders == 3, f"expected 3 rendered sliders, got {rep.n_sliders}\n" + rep.summary()


def test_checks_catch_known_failures(control_report):
    """Negative controls: a slider whose figure ignores it, a widget whose model does not exist
    ("Error displaying widget: model not found"), a traceback and a cell never reached must each be
    reported, on the right cell."""
    found = {(p.cell, p.kind) for p in control_report.problems}
    missed = [(c, k) for c, k in bh.CONTROL_EXPECTED_PROBLEMS.items() if (c, k) not in found]
    assert not missed, f"the checks missed (cell, problem) {missed}\n" + control_report.summary()
    texts = "\n".join(str(p) for p in control_report.problems)
    assert "deliberate error" in texts and "model not found" in texts, control_report.summary()


@pytest.mark.parametrize("notebook", CONCEPT_NOTEBOOKS, ids=[p.name for p in CONCEPT_NOTEBOOKS])
def test_concept_notebook_in_browser(browser, lab_servers, screenshots, notebook):
    t0 = time.monotonic()
    rep = _check(browser, lab_servers["course"], notebook.name, screenshots, run_timeout=RUN_TIMEOUT)
    assert not rep.problems, (
        f"{notebook.name} as a student sees it in JupyterLab ({time.monotonic() - t0:.0f} s); "
        f"screenshots in {screenshots.shots}:\n" + rep.summary()
    )
    if bh.notebook_expectations(notebook)["n_slider_calls"]:
        assert rep.slider_moves, f"{notebook.name} constructs sliders but none could be moved\n" + rep.summary()
