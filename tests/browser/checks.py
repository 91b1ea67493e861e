"""What a student would see, checked: `check_notebook` opens one notebook in JupyterLab, runs "Run All Cells"
from the Run menu, waits for the kernel, and returns a `NotebookReport` listing every problem (tracebacks,
widgets that do not render, sliders whose figure does not change, cells that did not run), with screenshots.

Cells are numbered 0-based, as in `nb.cells` (markdown cells count), like edudiff.course.homework's messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .page import (
    VIEWPORT,
    figure_state,
    full_screenshot,
    page_state,
    run_all_cells,
    wait_for,
    wait_until_stable,
)

_SLIDER_CALL = re.compile(r"\b\w*Slider\s*\(")
_EXEC_COUNT = re.compile(r"^\[(\d+)\]:?$")
# Names of the screenshots check_notebook writes (a new run deletes only these).
SCREENSHOT_NAME = re.compile(
    r"^[A-Za-z0-9_.-]+-(0-open-failed|1-after-run-all|2-widget\d+-before"
    r"|3-widget\d+-slider\d+-after-Arrow(Left|Right)|9-exception)\.png$"
)


@dataclass
class BrowserProblem:
    kind: str  # error-output | not-executed | widget-not-rendered | slider-missing | figure-unchanged
    #            | no-figure | run-timeout | dialog | file-modified
    detail: str
    cell: int | None = None  # the cell's index in nb.cells (0-based), when it is one cell's

    def __str__(self) -> str:
        return f"[{self.kind}] {self.detail}"


@dataclass
class NotebookReport:
    name: str
    problems: list[BrowserProblem] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    n_code_cells: int = 0
    n_executed: int = 0
    n_sliders: int = 0
    n_widgets: int = 0
    slider_moves: list[str] = field(default_factory=list)
    run_via: str = ""
    console_errors: list[str] = field(default_factory=list)
    seconds_open: float = 0.0
    seconds_run: float = 0.0
    seconds_total: float = 0.0
    seconds_screenshot: float = 0.0
    seconds_sliders: float = 0.0

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def add(self, kind: str, detail: str, cell: int | None = None) -> None:
        self.problems.append(BrowserProblem(kind, detail, cell))

    def summary(self) -> str:
        lines = [
            f"{self.name}: {self.n_executed}/{self.n_code_cells} code cells executed, "
            f"{self.n_widgets} widget views, {self.n_sliders} sliders rendered; "
            f"open {self.seconds_open:.1f} s, run {self.seconds_run:.1f} s, screenshot "
            f"{self.seconds_screenshot:.1f} s, sliders {self.seconds_sliders:.1f} s, total {self.seconds_total:.1f} s"
        ]
        if self.run_via:
            lines.append(f"  ran via: {self.run_via}")
        lines += [f"  slider: {m}" for m in self.slider_moves]
        lines += [f"  PROBLEM {p}" for p in self.problems]
        lines += [f"  screenshot: {s}" for s in self.screenshots]
        if self.problems and self.console_errors:
            lines += [f"  browser console: {c}" for c in self.console_errors[:10]]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# What the notebook file says we should see
# --------------------------------------------------------------------------------------------
def _strip_comments(src: str) -> str:
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in src.splitlines())


def notebook_expectations(path: Path) -> dict:
    """From the .ipynb: where the code cells are (their nb.cells indices), which should get an execution
    count, and how many sliders the source constructs (a lower bound on the `.widget-slider` views)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    code_index = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    sources = ["".join(nb["cells"][i]["source"]) for i in code_index]
    return {
        "n_code_cells": len(code_index),
        "cell_index": code_index,  # the k-th code cell (as the page counts them) is nb.cells[cell_index[k]]
        # JupyterLab does not execute (nor number) an empty code cell
        "nonempty": [bool(s.strip()) for s in sources],
        "n_slider_calls": sum(len(_SLIDER_CALL.findall(_strip_comments(s))) for s in sources),
    }


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)


def _checkpoint_of(path: Path) -> Path:
    return path.parent / ".ipynb_checkpoints" / f"{path.stem}-checkpoint{path.suffix}"


def _saved_outputs(path: Path) -> str:
    """'' if the notebook file holds no outputs / execution counts (as the course stores them)."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    n_out = sum(len(c.get("outputs") or []) for c in code)
    n_exec = sum(c.get("execution_count") is not None for c in code)
    return f"{n_out} outputs and {n_exec} execution counts" if (n_out or n_exec) else ""


# --------------------------------------------------------------------------------------------
# One notebook
# --------------------------------------------------------------------------------------------
@dataclass
class _Visit:
    """One notebook's check in progress: the page, where the screenshots go, what the file expects."""

    page: object
    server: object
    name: str
    shots: Path
    slug: str
    expect: dict
    rep: NotebookReport

    def cell(self, code_cell: int) -> int:
        """nb.cells index of the page's 0-based code-cell number."""
        index = self.expect["cell_index"]
        return index[code_cell] if code_cell < len(index) else code_cell

    def screenshot(self, suffix: str, locator=None) -> None:
        path = self.shots / f"{self.slug}-{suffix}.png"
        (locator or self.page).screenshot(path=str(path))
        self.rep.screenshots.append(path)


def check_notebook(
    browser,
    server,
    name: str,
    shots: Path,
    *,
    context=None,
    run_timeout: float = 300.0,
    widget_timeout: float = 30.0,
    figure_timeout: float = 30.0,
) -> NotebookReport:
    """Open `name` (relative to the server's notebook dir) in a new page -- of `context` if given
    (sharing its HTTP cache makes JupyterLab load faster), else of a fresh browser context -- run all
    cells from the Run menu and check what is on the page. Never raises for a notebook problem:
    every problem goes into the returned report.

    The test never writes into the notebook dir (autosave off, checkpoints elsewhere, no save); it only
    checks afterwards that JupyterLab did not save outputs into the file. It never "restores" a file
    either: others may rebuild a notebook while this runs."""
    t_start, rep, path = time.monotonic(), NotebookReport(name=name), server.root_dir / name
    had_checkpoint, had_outputs = _checkpoint_of(path).exists(), bool(_saved_outputs(path))
    shots.mkdir(parents=True, exist_ok=True)
    own_context = context is None
    context = browser.new_context(viewport=VIEWPORT) if own_context else context
    page = context.new_page()
    visit = _Visit(page, server, name, shots, _slug(name), notebook_expectations(path), rep)
    try:
        if _open(visit):
            _run(visit, run_timeout)
            st, _ = wait_for(page, lambda s: s["loadingWidget"] == 0, timeout=widget_timeout)
            st = page_state(page)
            _check_executed(visit, st)
            _check_errors_and_widgets(visit, st, widget_timeout)
            t_shot = time.monotonic()
            full_screenshot(page, shots / f"{visit.slug}-1-after-run-all.png")
            rep.screenshots.append(shots / f"{visit.slug}-1-after-run-all.png")
            rep.seconds_screenshot = time.monotonic() - t_shot
            _check_sliders(visit, st, figure_timeout)
    except Exception as exc:  # report, with a screenshot, instead of a bare traceback
        rep.add("run-timeout", f"browser step failed: {type(exc).__name__}: {str(exc)[:800]}")
        with contextlib.suppress(Exception):  # the page may be gone
            visit.screenshot("9-exception")
    finally:
        page.close()
        if own_context:
            context.close()
        server.shutdown_kernels()
        _check_files(rep, path, had_outputs, had_checkpoint)
        rep.seconds_total = time.monotonic() - t_start
    return rep


def _open(visit: _Visit) -> bool:
    """Open the notebook in a fresh workspace and wait until its kernel is up and idle."""
    page, rep, t0 = visit.page, visit.rep, time.monotonic()
    page.set_viewport_size(VIEWPORT)
    page.set_default_timeout(60_000)
    page.on("console", lambda m: rep.console_errors.append(m.text[:300]) if m.type == "error" else None)
    page.on("pageerror", lambda e: rep.console_errors.append(f"uncaught: {str(e)[:300]}"))
    # A fresh workspace per notebook, so JupyterLab does not reopen the previous one.
    url = visit.server.url(f"lab/workspaces/bt-{visit.slug}/tree/{visit.name}", reset="")
    page.goto(url, wait_until="domcontentloaded")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)

    # The toolbar's indicator says "idle" before any kernel exists: also ask the server.
    def kernel_ready(s):
        return bool(s) and s["status"] == "idle" and visit.server.kernel_state(visit.name) == "idle"

    st, ok = wait_until_stable(page, kernel_ready, timeout=120)
    rep.seconds_open = time.monotonic() - t0
    if not ok:
        status, dialogs = st and st["status"], st and st["dialogs"]
        rep.add("run-timeout", f"kernel not idle 120 s after opening (status {status}); dialogs: {dialogs}")
        visit.screenshot("0-open-failed")
    return ok


def _run(visit: _Visit, run_timeout: float) -> None:
    """Run > Run All Cells; wait until the kernel is idle with no [*] prompt left."""
    t0 = time.monotonic()
    visit.rep.run_via = run_all_cells(visit.page)

    def finished(s):
        return bool(s) and s["status"] == "idle" and not any(p in ("[*]:", "[*]") for p in s["prompts"])

    visit.page.wait_for_timeout(1000)
    st, ok = wait_until_stable(visit.page, finished, timeout=run_timeout)
    visit.rep.seconds_run = time.monotonic() - t0
    if not ok:
        visit.rep.add("run-timeout", f"cells still running after {run_timeout:.0f} s: prompts {st['prompts']}")


def _check_executed(visit: _Visit, st: dict) -> None:
    rep, expect = visit.rep, visit.expect
    rep.n_code_cells = st["nCode"]
    if st["nCode"] != expect["n_code_cells"]:
        rep.add("not-executed", f"page shows {st['nCode']} code cells, file has {expect['n_code_cells']}")
    for k, (prompt, nonempty) in enumerate(zip(st["prompts"], expect["nonempty"])):
        if not nonempty:
            continue
        if _EXEC_COUNT.match(prompt):
            rep.n_executed += 1
        else:
            cell = visit.cell(k)
            rep.add("not-executed", f"cell {cell} has prompt {prompt!r}, no execution count", cell)


def _check_errors_and_widgets(visit: _Visit, st: dict, widget_timeout: float) -> None:
    rep = visit.rep
    for e in st["errors"]:
        cell = visit.cell(e["cell"])
        rep.add("error-output", f"cell {cell} {e['prompt']} shows:\n{e['text']}", cell)
    for d in st["dialogs"]:
        rep.add("dialog", f"dialog open: {d}")
    rep.n_widgets, rep.n_sliders = len(st["widgets"]), st["nSliders"]
    for w in st["widgets"]:
        if not w["hasView"]:
            cell = visit.cell(w["cell"])
            rep.add("widget-not-rendered", f"cell {cell}: widget output shows {w['text']!r}", cell)
    for m in st["modelNotFound"] if "widget-not-rendered" not in rep.kinds() else []:
        rep.add("widget-not-rendered", f"page shows {m!r}")
    if st["loadingWidget"]:
        n = st["loadingWidget"]
        rep.add("widget-not-rendered", f"{n} widget(s) still 'Loading widget...' after {widget_timeout:.0f} s")
    for f in st["fallbacks"]:
        cell = visit.cell(f["cell"])
        rep.add("widget-not-rendered", f"cell {cell}: widget shown as text (no widget front end): {f['text']!r}", cell)
    if st["nSliders"] < visit.expect["n_slider_calls"]:
        made, shown = visit.expect["n_slider_calls"], st["nSliders"]
        rep.add("slider-missing", f"the source constructs {made} slider(s), the page renders {shown} '.widget-slider'")


def _check_sliders(visit: _Visit, st: dict, figure_timeout: float) -> None:
    """Move every slider of every rendered widget; then look for tracebacks its new values caused."""
    t0 = time.monotonic()
    for w in st["widgets"]:
        if w["hasView"]:
            for j in range(w["sliders"]):
                _move_slider(visit, w, j, figure_timeout)
    visit.rep.seconds_sliders = time.monotonic() - t0
    # a slider value whose plot function raises shows its traceback in the widget's output
    seen = {(e["cell"], e["text"]) for e in st["errors"]}
    for e in page_state(visit.page)["errors"]:
        if (e["cell"], e["text"]) not in seen:
            cell = visit.cell(e["cell"])
            visit.rep.add("error-output", f"cell {cell}, after moving its slider, shows:\n{e['text']}", cell)


def _check_files(rep: NotebookReport, path: Path, had_outputs: bool, had_checkpoint: bool) -> None:
    saved = _saved_outputs(path)
    if saved and not had_outputs:
        rep.add("file-modified", f"{rep.name} on disk now holds {saved} (was it saved from the browser?)")
    if _checkpoint_of(path).exists() and not had_checkpoint:
        rep.add("file-modified", f"a checkpoint appeared in the repository: {_checkpoint_of(path)}")


# --------------------------------------------------------------------------------------------
# Sliders drive figures
# --------------------------------------------------------------------------------------------
def _press_until_value_changes(visit: _Visit, handle, k: int, j: int, before: dict) -> str | None:
    """Press ArrowRight (ArrowLeft first if the slider sits at its maximum) until the value changes;
    returns the key that moved it, or None."""
    for key in ("ArrowLeft", "ArrowRight") if before["atMax"] else ("ArrowRight", "ArrowLeft"):
        handle.focus()
        visit.page.keyboard.press(key)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            cur = figure_state(visit.page, k, j)
            if cur and (cur["value"], cur["aria"]) != (before["value"], before["aria"]):
                return key
            visit.page.wait_for_timeout(100)
    return None


def _wait_for_new_figure(visit: _Visit, k: int, j: int, before: dict, timeout: float) -> dict | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        after = figure_state(visit.page, k, j)
        if after and after["nfig"] > 0 and after["fig"] != before["fig"]:
            break
        visit.page.wait_for_timeout(200)
    visit.page.wait_for_timeout(300)  # let the new image paint before the screenshot
    return figure_state(visit.page, k, j)


def _digest(s: str) -> str:
    return hashlib.sha1(s.encode()).hexdigest()[:10]


def _move_slider(visit: _Visit, w: dict, j: int, timeout: float) -> None:
    """Focus the handle of slider j of widget w, press ArrowRight (ArrowLeft at the maximum) and
    wait for the figure in the widget's output to change."""
    rep, k, cell = visit.rep, w["id"], visit.cell(w["cell"])
    root = visit.page.locator(f'[data-browsertest-widget="{k}"]')
    handle = root.locator(".widget-slider").nth(j).locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    before = figure_state(visit.page, k, j)
    label = f"widget {k} (cell {cell}) slider {(((before or {}).get('name') or '').strip() or f'#{j + 1}')!r}"
    if not before or before["nfig"] == 0:
        rep.add("no-figure", f"{label}: no figure (img/svg) in the widget's output", cell)
        return
    if j == 0:
        visit.screenshot(f"2-widget{k}-before", root)
    moved = _press_until_value_changes(visit, handle, k, j, before)
    if not moved:
        detail = f"{label}: ArrowRight/ArrowLeft on the slider handle did not change its value ({before['value']})"
        rep.add("figure-unchanged", detail, cell)
        return
    after = _wait_for_new_figure(visit, k, j, before, timeout)
    visit.screenshot(f"3-widget{k}-slider{j + 1}-after-{moved}", root)
    changed = bool(after) and after["nfig"] > 0 and after["fig"] != before["fig"]
    rep.slider_moves.append(
        f"{label}: {moved} {before['value']} -> {after and after['value']}, figure "
        f"{_digest(before['fig'])} -> {_digest(after['fig']) if after else None} "
        f"({'changed' if changed else 'UNCHANGED'})"
    )
    if not changed:
        rep.add(
            "figure-unchanged",
            f"{label}: slider moved {before['value']} -> {after and after['value']} but the figure stayed the "
            f"same for {timeout:.0f} s",
            cell,
        )
