"""The browser tests' helpers (tests/test_browser.py): JupyterLab in a real headless Chromium, driven like a
student.

- `server`: `find_chromium()` (Debian's `chromium`; `.ci/install_browser.sh`) and `LabServer`, a throw-away
  `jupyter lab` started the way `make lab` starts it.
- `page`: reading the page's state (`state.js`, `figure.js`), waiting, Run All Cells, screenshots.
- `checks`: `check_notebook(browser, server, name, shots)` -> a `NotebookReport` of `BrowserProblem`s.
- `fixtures`: `write_fixture_notebook(path)`, the control notebook with known failures.

Only the standard library is imported at module level; playwright objects are passed in.
"""

from .checks import SCREENSHOT_NAME, BrowserProblem, NotebookReport, check_notebook, notebook_expectations
from .fixtures import CONTROL_EXPECTED_PROBLEMS, CONTROL_GOOD_WIDGETS, write_fixture_notebook
from .page import MAX_SCREENSHOT_HEIGHT, VIEWPORT
from .server import CHROMIUM_ARGS, LAB_USER_SETTINGS, LabServer, find_chromium, free_port, jupyter_command

__all__ = [
    "SCREENSHOT_NAME", "BrowserProblem", "NotebookReport", "check_notebook", "notebook_expectations",
    "CONTROL_EXPECTED_PROBLEMS", "CONTROL_GOOD_WIDGETS", "write_fixture_notebook", "MAX_SCREENSHOT_HEIGHT",
    "VIEWPORT", "CHROMIUM_ARGS", "LAB_USER_SETTINGS", "LabServer", "find_chromium", "free_port", "jupyter_command",
]  # fmt: skip
