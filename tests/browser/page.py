"""Driving the JupyterLab page: reading its state (state.js), waiting, Run All Cells, full-page screenshots."""

from __future__ import annotations

import re
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATE_JS = (HERE / "state.js").read_text(encoding="utf-8")
FIGURE_JS = (HERE / "figure.js").read_text(encoding="utf-8")
SCROLL_HEIGHT_JS = (HERE / "scroll_height.js").read_text(encoding="utf-8")

VIEWPORT = {"width": 1400, "height": 1000}
MAX_SCREENSHOT_HEIGHT = 15000  # px; Chromium's limit for one capture is 16384


def page_state(page) -> dict:
    return page.evaluate(STATE_JS)


def figure_state(page, widget: int, slider: int) -> dict | None:
    return page.evaluate(FIGURE_JS, [widget, slider])


def wait_for(page, predicate, timeout: float, poll: float = 0.5):
    """Poll the page state until predicate(state) is true; returns (state, ok)."""
    t0 = time.monotonic()
    st = page_state(page)
    while not predicate(st):
        if time.monotonic() - t0 > timeout:
            return st, False
        page.wait_for_timeout(int(poll * 1000))
        st = page_state(page)
    return st, True


def wait_until_stable(page, predicate, timeout: float):
    """Wait until predicate(state) holds twice in a row, 1 s apart (a kernel is briefly idle between cells);
    returns (state, ok)."""
    deadline = time.monotonic() + timeout
    while True:
        st, ok = wait_for(page, predicate, timeout=max(0.0, deadline - time.monotonic()))
        if not ok:
            return st, False
        page.wait_for_timeout(1000)
        if predicate(page_state(page)):
            return st, True


def full_screenshot(page, path: Path) -> None:
    """The whole notebook in one image: scroll it to the top and grow the viewport to its height."""
    extra = page.evaluate(SCROLL_HEIGHT_JS)
    h = min(VIEWPORT["height"] + int(extra) + 40, MAX_SCREENSHOT_HEIGHT)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": h})
    page.wait_for_timeout(500)  # lumino re-layout
    page.evaluate(SCROLL_HEIGHT_JS)  # back to the top after the re-layout
    page.wait_for_timeout(100)
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)
    page.wait_for_timeout(200)


def run_all_cells(page) -> str:
    """Run > Run All Cells, as a student would; the command palette if the menu cannot be used.
    Returns which of the two was used."""
    try:
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click(timeout=10_000)
        item = page.locator(
            ".lm-Menu-item", has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
        )
        item.first.click(timeout=5_000)
        return "Run menu > Run All Cells"
    except Exception:  # any playwright failure: fall back to the palette
        page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("Run All Cells")
    page.locator(".lm-CommandPalette-item", has_text=re.compile(r"^Run All Cells")).first.click()
    return "command palette > Run All Cells"
