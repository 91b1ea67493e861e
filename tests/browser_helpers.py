"""Helpers for tests/test_browser.py: JupyterLab in a real headless Chromium, driven like a student.

- `find_chromium()` locates the system Chromium (Debian's `chromium`; `.ci/install_browser.sh`).
- `LabServer` starts `jupyter lab --notebook-dir=<dir> --port=<free port>` -- the README's
  `make lab` command -- plus test-only arguments (127.0.0.1, a token, --no-browser) and throw-away
  JUPYTER_CONFIG/DATA/RUNTIME dirs and JupyterLab user settings, so nothing of the user's is touched:
  autosave off (the notebooks in the repo stay without outputs), no news/update checks, and
  windowing off (every cell stays in the DOM, so the checks see all of them).
- `check_notebook(browser, server, name, shots)` opens one notebook, runs "Run All Cells" from the
  Run menu, waits for the kernel, and returns a `NotebookReport` listing every problem a student would
  see (tracebacks, widgets that do not render, sliders whose figure does not change, cells that did
  not run), with screenshots saved under `shots`.
- `write_fixture_notebook(path)` writes the small slider+figure control notebook: its first cells
  must pass every check, its last cells carry known failures the checks must report.

Only the standard library is imported at module level; playwright objects are passed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Arguments for Debian's Chromium in a container / CI runner: no sandbox (root, no user namespaces),
# no GPU, and nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

VIEWPORT = {"width": 1400, "height": 1000}
MAX_SCREENSHOT_HEIGHT = 15000  # px; Chromium's limit for one capture is 16384

# JupyterLab user settings written into the throw-away settings dir.
LAB_USER_SETTINGS = {
    # Never write outputs into the repository's notebooks (they are stored without outputs).
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # Keep every cell attached to the DOM (the default 'contentVisibility' also does, 'full' would not).
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No requests to the internet, no news toast over the notebook.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable: $EDUDIFF_CHROMIUM, else Debian's, else one on PATH."""
    env = os.environ.get("EDUDIFF_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for cand in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if os.access(cand, os.X_OK):
            return cand
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def jupyter_command() -> list[str]:
    """`jupyter` of the environment running the tests (.venv/bin/jupyter under `make test`)."""
    exe = Path(sys.executable).with_name("jupyter")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "jupyter"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """`jupyter lab --notebook-dir=<root_dir> --port=<free>` on 127.0.0.1 with a test token.

    Use as a context manager. `url(path)` gives an address with the token; `api(...)` calls the
    REST API. The server log goes to `self.log_path` (shown when the start fails).
    """

    def __init__(self, root_dir: Path, startup_timeout: float = 120.0, cwd: Path | None = None):
        self.root_dir = Path(root_dir).resolve()
        self.cwd = Path(cwd).resolve() if cwd else self.root_dir
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(16)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="edudiff-lab-"))
        self.log_path = self._tmp / "jupyter-lab.log"
        self.startup_seconds: float | None = None
        self.command: list[str] = []
        self._t0 = time.monotonic()

    # -- environment -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        dirs = {
            "JUPYTER_CONFIG_DIR": self._tmp / "config",
            "JUPYTER_DATA_DIR": self._tmp / "data",
            "JUPYTER_RUNTIME_DIR": self._tmp / "runtime",
            "IPYTHONDIR": self._tmp / "ipython",
            "JUPYTERLAB_SETTINGS_DIR": self._tmp / "lab-user-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self._tmp / "lab-workspaces",
        }
        for key, path in dirs.items():
            path.mkdir(parents=True, exist_ok=True)
            env[key] = str(path)
        for rel, settings in LAB_USER_SETTINGS.items():
            p = dirs["JUPYTERLAB_SETTINGS_DIR"] / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(settings))
        # A student's kernel draws inline figures; the test session's MPLBACKEND=Agg (set by the root
        # conftest for nbval) would make plt.show() in the kernel draw nothing.
        env.pop("MPLBACKEND", None)
        env.setdefault("EDUDIFF_FAST", "1")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    # -- lifecycle ---------------------------------------------------------------------------
    def launch(self) -> LabServer:
        """Start the process and return at once; `wait_started()` waits for it (so that two servers
        can start side by side)."""
        self._t0 = time.monotonic()
        env = self._env()
        self.port = free_port()
        self.command = jupyter_command() + [
            "lab",
            f"--notebook-dir={self.root_dir}",
            f"--port={self.port}",
            # test-only arguments
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            # JupyterLab makes a checkpoint of every notebook it opens: keep them out of the repo
            f"--FileCheckpoints.checkpoint_dir={self._tmp / 'checkpoints'}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            self.command.append("--allow-root")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(self.cwd),
                start_new_session=True,
            )
        return self

    def wait_started(self) -> LabServer:
        """Wait until the REST API and the /lab page answer; raise RuntimeError with the log if not."""
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between free_port() and the bind
            ok, last_error = self._wait_ready(self._t0)
            if ok:
                self.startup_seconds = time.monotonic() - self._t0
                return self
            self.stop()
            if "address already in use" not in self.log_tail().lower():
                break
            t0 = self._t0
            self.launch()
            self._t0 = t0
        raise RuntimeError(
            f"JupyterLab did not start ({last_error}).\ncommand: {' '.join(self.command)}\n"
            f"log ({self.log_path}):\n{self.log_tail()}"
        )

    def start(self) -> LabServer:
        return self.launch().wait_started()

    def _wait_ready(self, t0: float) -> tuple[bool, str]:
        last = "no answer yet"
        while time.monotonic() - t0 < self.startup_timeout:
            if self.proc.poll() is not None:
                return False, f"process exited with code {self.proc.returncode}"
            try:
                self.api("GET", "/api/status", timeout=2)
                # the lab page itself (its handler is loaded after the REST API)
                with urllib.request.urlopen(self.url("lab"), timeout=5) as r:
                    if r.status == 200:
                        return True, ""
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.3)
        return False, f"not answering on port {self.port} after {self.startup_timeout:.0f} s ({last})"

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # Kernels run in their own sessions (jupyter_client), out of reach of killpg below: shut
            # them down through the API first; SIGTERM makes the server shut down any left too.
            self.shutdown_kernels()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        # anything else the server started in its own process group (terminals)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # -- access ------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str, **query: str) -> str:
        q = "&".join([f"token={self.token}"] + [f"{k}={v}" if v else k for k, v in query.items()])
        return f"{self.base}{path.lstrip('/')}?{q}"

    def api(self, method: str, path: str, timeout: float = 10):
        req = urllib.request.Request(
            self.base + path.lstrip("/"),
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Delete every session (and its kernel), so the next notebook starts from a quiet machine."""
        try:
            for s in self.api("GET", "/api/sessions") or []:
                self.api("DELETE", f"/api/sessions/{s['id']}", timeout=30)
            for k in self.api("GET", "/api/kernels") or []:
                self.api("DELETE", f"/api/kernels/{k['id']}", timeout=30)
        except (urllib.error.URLError, OSError):
            pass

    def kernel_state(self, notebook: str) -> str | None:
        """execution_state of the kernel of the session for `notebook` (None: no session yet)."""
        try:
            for s in self.api("GET", "/api/sessions", timeout=5) or []:
                if s.get("path") == notebook and s.get("kernel"):
                    return s["kernel"].get("execution_state")
        except (urllib.error.URLError, OSError, ValueError):
            pass
        return None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


# --------------------------------------------------------------------------------------------
# What the notebook file says we should see
# --------------------------------------------------------------------------------------------
_SLIDER_CALL = re.compile(r"\b\w*Slider\s*\(")


def _strip_comments(src: str) -> str:
    return "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in src.splitlines())


def notebook_expectations(path: Path) -> dict:
    """From the .ipynb: which code cells should get an execution count, and how many sliders the
    source constructs (a lower bound on the `.widget-slider` views the page must show)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in code]
    return {
        "n_code_cells": len(code),
        # JupyterLab does not execute (nor number) an empty code cell
        "nonempty": [bool(s.strip()) for s in sources],
        "n_slider_calls": sum(len(_SLIDER_CALL.findall(_strip_comments(s))) for s in sources),
    }


# --------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------
# One JS function that reads everything the checks need from the DOM of the open notebook.
_STATE_JS = r"""
() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')
             || document.querySelector('.jp-NotebookPanel');
  if (!panel) return null;
  const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
  const code = cells.filter(c => c.classList.contains('jp-CodeCell'));
  const prompts = code.map(c => {
    const p = c.querySelector('.jp-InputArea-prompt');
    return p ? p.textContent.trim() : '';
  });
  const outs = [...panel.querySelectorAll('.jp-OutputArea-output')];
  const errors = [];
  const fallbacks = [];
  outs.forEach(o => {
    const mime = o.getAttribute('data-mime-type') || '';
    const text = (o.innerText || '').trim();
    const cell = o.closest('.jp-CodeCell');
    const idx = code.indexOf(cell);
    const isTrace = /Traceback \(most recent call last\)/.test(text)
                 || /^\s*\w*(Error|Exception|Interrupt)\b(:|$)/m.test(text);
    if ((mime === 'application/vnd.jupyter.stderr' && isTrace) ||
        (o.querySelector('.jp-RenderedText') && /Traceback \(most recent call last\)/.test(text))) {
      errors.push({cell: idx, prompt: prompts[idx] || '', text: text.slice(0, 1500)});
    }
    // widget shown as its text repr: no widget manager / renderer in the front end
    if (mime === 'text/plain' &&
        /^(interactive|VBox|HBox|Box|GridBox|Tab|Accordion|Output|Play|Button|Dropdown|\w*Slider|\w*Text)\(/.test(text)) {
      fallbacks.push({cell: idx, text: text.slice(0, 300)});
    }
  });
  // Top-level outputs of the widget renderer (it sets no data-mime-type): they hold a widget view,
  // or -- when rendering failed -- carry the class jupyter-widgets themselves with an error text,
  // or still say "Loading widget...".
  const topOuts = [...panel.querySelectorAll('.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')];
  const widgetOuts = topOuts.filter(o => o.classList.contains('jupyter-widgets')
                                      || o.querySelector('.jupyter-widgets')
                                      || /^(Loading widget|Error displaying widget)/.test((o.textContent || '').trim()));
  const widgets = widgetOuts.map((o, k) => {
    o.setAttribute('data-browsertest-widget', String(k));
    const cell = o.closest('.jp-CodeCell');
    return {
      id: k,
      cell: code.indexOf(cell),
      text: (o.innerText || '').trim().slice(0, 200),
      hasView: !!o.querySelector('.jupyter-widgets')
               && !/^(Error displaying widget|Loading widget)/.test((o.textContent || '').trim()),
      sliders: o.querySelectorAll('.widget-slider').length,
    };
  });
  const bodyText = panel.innerText || '';
  return {
    status: ind ? ind.getAttribute('data-status') : null,
    nCode: code.length,
    prompts,
    errors,
    fallbacks,
    widgets,
    nSliders: panel.querySelectorAll('.widget-slider').length,
    modelNotFound: (bodyText.match(/Error displaying widget[^\n]*/g) || []),
    loadingWidget: (bodyText.match(/Loading widget\.\.\./g) || []).length,
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => (d.innerText || '').trim().slice(0, 300)),
  };
}
"""

# Everything that draws the figure(s) of one widget, as a string to compare before/after a move.
_FIGURE_JS = r"""
([k, j]) => {
  const o = document.querySelector(`[data-browsertest-widget="${k}"]`);
  if (!o) return null;
  const sl = o.querySelectorAll('.widget-slider')[j];
  const imgs = [...o.querySelectorAll('img')].map(i => i.getAttribute('src') || '');
  const svgs = [...o.querySelectorAll('svg')].filter(s => !s.closest('.noUi-target, button, .lm-Widget.jp-ToolbarButtonComponent'))
                                             .map(s => s.outerHTML);
  const h = sl ? sl.querySelector('.noUi-handle') : null;
  const lab = sl ? sl.querySelector('.widget-label') : null;
  return {name: lab ? lab.textContent : null,fig: imgs.join('|') + '#' + svgs.join('|'), nfig: imgs.length + svgs.length,
          value: sl && sl.querySelector('.widget-readout') ? sl.querySelector('.widget-readout').textContent.trim()
                                                           : (h ? h.getAttribute('aria-valuenow') : null),
          aria: h ? h.getAttribute('aria-valuenow') : null,
          atMax: h ? parseFloat(h.getAttribute('aria-valuenow')) >= parseFloat(h.getAttribute('aria-valuemax')) : false};
}
"""

_EXEC_COUNT = re.compile(r"^\[(\d+)\]:?$")
# Names of the screenshots check_notebook writes (a new run deletes only these).
SCREENSHOT_NAME = re.compile(
    r"^[A-Za-z0-9_.-]+-(0-open-failed|1-after-run-all|2-widget\d+-before"
    r"|3-widget\d+-slider\d+-after-Arrow(Left|Right)|9-exception)\.png$"
)


@dataclass
class Problem:
    kind: str  # error-output | not-executed | widget-not-rendered | slider-missing | figure-unchanged
    #            | no-figure | run-timeout | dialog | file-modified
    detail: str
    cell: int | None = None  # 1-based index among the notebook's code cells, when it is one cell's

    def __str__(self) -> str:
        return f"[{self.kind}] {self.detail}"


@dataclass
class NotebookReport:
    name: str
    problems: list[Problem] = field(default_factory=list)
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


def _state(page) -> dict:
    return page.evaluate(_STATE_JS)


def _full_screenshot(page, path: Path) -> None:
    """The whole notebook in one image: scroll it to the top and grow the viewport to its height."""
    extra = page.evaluate(r"""() => {
        const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
               || document.querySelector('.jp-NotebookPanel .jp-Notebook');
        if (!s) return 0;
        s.scrollTop = 0;
        const cells = s.querySelectorAll('.jp-Cell');
        if (!cells.length) return 0;
        const bottom = cells[cells.length - 1].getBoundingClientRect().bottom - s.getBoundingClientRect().top;
        return Math.max(0, bottom - s.clientHeight); }""")
    h = min(VIEWPORT["height"] + int(extra) + 40, MAX_SCREENSHOT_HEIGHT)
    page.set_viewport_size({"width": VIEWPORT["width"], "height": h})
    page.wait_for_timeout(500)  # lumino re-layout
    page.evaluate("""() => { const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
                             if (s) s.scrollTop = 0; }""")
    page.wait_for_timeout(100)
    page.screenshot(path=str(path))
    page.set_viewport_size(VIEWPORT)
    page.wait_for_timeout(200)


def _run_all_cells(page) -> str:
    """Run > Run All Cells, as a student would; the command palette if the menu cannot be used.
    Returns which of the two was used."""
    try:
        page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click(timeout=10_000)
        item = page.locator(
            ".lm-Menu-item", has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
        )
        item.first.click(timeout=5_000)
        return "Run menu > Run All Cells"
    except Exception:  # noqa: BLE001 - fall back to the palette
        page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+C")
    page.locator(".lm-CommandPalette-input").fill("Run All Cells")
    page.locator(".lm-CommandPalette-item", has_text=re.compile(r"^Run All Cells")).first.click()
    return "command palette > Run All Cells"


def _wait(page, predicate, timeout: float, poll: float = 0.5):
    """Poll the page state until predicate(state) is true; returns (state, ok)."""
    t0 = time.monotonic()
    st = _state(page)
    while not predicate(st):
        if time.monotonic() - t0 > timeout:
            return st, False
        page.wait_for_timeout(int(poll * 1000))
        st = _state(page)
    return st, True


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


def check_notebook(
    browser,
    server: LabServer,
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
    every problem goes into the returned report."""
    t_start = time.monotonic()
    rep = NotebookReport(name=name)
    path = server.root_dir / name
    expect = notebook_expectations(path)
    # The test never writes into the notebook dir (autosave off, checkpoints elsewhere, no save);
    # it only checks afterwards that JupyterLab did not save outputs into the file. It never
    # "restores" a file either: others may rebuild a notebook while this runs.
    had_checkpoint = _checkpoint_of(path).exists()
    had_outputs = bool(_saved_outputs(path))
    shots.mkdir(parents=True, exist_ok=True)
    slug = _slug(name)

    own_context = context is None
    if own_context:
        context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_viewport_size(VIEWPORT)
    page.set_default_timeout(60_000)
    page.on("console", lambda m: rep.console_errors.append(m.text[:300]) if m.type == "error" else None)
    page.on("pageerror", lambda e: rep.console_errors.append(f"uncaught: {str(e)[:300]}"))
    try:
        # A fresh workspace per notebook, so JupyterLab does not reopen the previous one.
        page.goto(server.url(f"lab/workspaces/bt-{slug}/tree/{name}", reset=""), wait_until="domcontentloaded")
        page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)

        # The toolbar's indicator says "idle" before any kernel exists: also ask the server that
        # this notebook's kernel is up and idle, and see both hold for a second.
        def kernel_ready(s):
            return bool(s) and s["status"] == "idle" and server.kernel_state(name) == "idle"

        deadline = time.monotonic() + 120
        while True:
            st, ok = _wait(page, kernel_ready, timeout=max(0.0, deadline - time.monotonic()))
            if not ok:
                break
            page.wait_for_timeout(1000)
            if kernel_ready(_state(page)):
                break
        rep.seconds_open = time.monotonic() - t_start
        if not ok:
            rep.problems.append(
                Problem(
                    "run-timeout",
                    f"kernel not idle 120 s after opening (status {st and st['status']}); dialogs: {st and st['dialogs']}",
                )
            )
            page.screenshot(path=str(shots / f"{slug}-0-open-failed.png"))
            rep.screenshots.append(shots / f"{slug}-0-open-failed.png")
            return rep

        t_run = time.monotonic()
        rep.run_via = _run_all_cells(page)

        def finished(s):
            if not s or s["status"] != "idle":
                return False
            return not any(p == "[*]:" or p == "[*]" for p in s["prompts"])

        # Idle with no [*] twice in a row, 1 s apart (the kernel is briefly idle between cells).
        page.wait_for_timeout(1000)
        deadline = time.monotonic() + run_timeout
        while True:
            st, ok = _wait(page, finished, timeout=max(0.0, deadline - time.monotonic()))
            if not ok:
                break
            page.wait_for_timeout(1000)
            if finished(_state(page)):
                break
        rep.seconds_run = time.monotonic() - t_run
        if not ok:
            rep.problems.append(
                Problem("run-timeout", f"cells still running after {run_timeout:.0f} s: prompts {st['prompts']}")
            )

        # Widgets: give the manager time to turn every "Loading widget..." into a view.
        st, _ = _wait(page, lambda s: s["loadingWidget"] == 0, timeout=widget_timeout)
        st = _state(page)

        # -- executed -------------------------------------------------------------------------
        rep.n_code_cells = st["nCode"]
        if st["nCode"] != expect["n_code_cells"]:
            rep.problems.append(
                Problem("not-executed", f"page shows {st['nCode']} code cells, file has {expect['n_code_cells']}")
            )
        for i, (p, nonempty) in enumerate(zip(st["prompts"], expect["nonempty"])):
            if not nonempty:
                continue
            if _EXEC_COUNT.match(p):
                rep.n_executed += 1
            else:
                rep.problems.append(
                    Problem("not-executed", f"code cell {i + 1} has prompt {p!r}, no execution count", i + 1)
                )
        # -- errors ---------------------------------------------------------------------------
        for e in st["errors"]:
            rep.problems.append(
                Problem("error-output", f"code cell {e['cell'] + 1} {e['prompt']} shows:\n{e['text']}", e["cell"] + 1)
            )
        for d in st["dialogs"]:
            rep.problems.append(Problem("dialog", f"dialog open: {d}"))
        # -- widgets --------------------------------------------------------------------------
        rep.n_widgets = len(st["widgets"])
        rep.n_sliders = st["nSliders"]
        for w in st["widgets"]:
            if not w["hasView"]:
                rep.problems.append(
                    Problem(
                        "widget-not-rendered",
                        f"code cell {w['cell'] + 1}: widget output shows {w['text']!r}",
                        w["cell"] + 1,
                    )
                )
        for m in st["modelNotFound"] if "widget-not-rendered" not in rep.kinds() else []:
            rep.problems.append(Problem("widget-not-rendered", f"page shows {m!r}"))
        if st["loadingWidget"]:
            rep.problems.append(
                Problem(
                    "widget-not-rendered",
                    f"{st['loadingWidget']} widget(s) still 'Loading widget...' after {widget_timeout:.0f} s",
                )
            )
        for f in st["fallbacks"]:
            rep.problems.append(
                Problem(
                    "widget-not-rendered",
                    f"code cell {f['cell'] + 1}: widget shown as text (no widget front end): {f['text']!r}",
                    f["cell"] + 1,
                )
            )
        if st["nSliders"] < expect["n_slider_calls"]:
            rep.problems.append(
                Problem(
                    "slider-missing",
                    f"the source constructs {expect['n_slider_calls']} slider(s), the page renders {st['nSliders']} '.widget-slider'",
                )
            )

        shot = shots / f"{slug}-1-after-run-all.png"
        t_shot = time.monotonic()
        _full_screenshot(page, shot)
        rep.seconds_screenshot = time.monotonic() - t_shot
        rep.screenshots.append(shot)

        # -- sliders drive figures ------------------------------------------------------------
        t_sl = time.monotonic()
        for w in st["widgets"]:
            if not (w["hasView"] and w["sliders"]):
                continue
            for j in range(w["sliders"]):
                _move_slider(page, w, j, rep, shots, slug, figure_timeout)
        rep.seconds_sliders = time.monotonic() - t_sl
        # a slider value whose plot function raises shows its traceback in the widget's output
        seen = {(e["cell"], e["text"]) for e in st["errors"]}
        for e in _state(page)["errors"]:
            if (e["cell"], e["text"]) not in seen:
                rep.problems.append(
                    Problem(
                        "error-output",
                        f"code cell {e['cell'] + 1}, after moving its slider, shows:\n{e['text']}",
                        e["cell"] + 1,
                    )
                )
    except Exception as exc:  # noqa: BLE001 - report, with a screenshot, instead of a bare traceback
        rep.problems.append(Problem("run-timeout", f"browser step failed: {type(exc).__name__}: {str(exc)[:800]}"))
        try:
            p = shots / f"{slug}-9-exception.png"
            page.screenshot(path=str(p))
            rep.screenshots.append(p)
        except Exception:  # noqa: BLE001
            pass
    finally:
        page.close()
        if own_context:
            context.close()
        server.shutdown_kernels()
        saved = _saved_outputs(path)
        if saved and not had_outputs:
            rep.problems.append(
                Problem("file-modified", f"{name} on disk now holds {saved} (was it saved from the browser?)")
            )
        if _checkpoint_of(path).exists() and not had_checkpoint:
            rep.problems.append(
                Problem("file-modified", f"a checkpoint appeared in the repository: {_checkpoint_of(path)}")
            )
        rep.seconds_total = time.monotonic() - t_start
    return rep


def _move_slider(page, w: dict, j: int, rep: NotebookReport, shots: Path, slug: str, timeout: float) -> None:
    """Focus the handle of slider j of widget w, press ArrowRight (ArrowLeft at the maximum) and
    wait for the figure in the widget's output to change."""
    k = w["id"]
    root = page.locator(f'[data-browsertest-widget="{k}"]')
    slider = root.locator(".widget-slider").nth(j)
    handle = slider.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    before = page.evaluate(_FIGURE_JS, [k, j])
    name = ((before or {}).get("name") or "").strip() or f"#{j + 1}"
    label = f"widget {k} (code cell {w['cell'] + 1}) slider {name!r}"
    tag = f"widget{k}-slider{j + 1}"
    if not before or before["nfig"] == 0:
        rep.problems.append(Problem("no-figure", f"{label}: no figure (img/svg) in the widget's output", w["cell"] + 1))
        return
    if j == 0:
        root.screenshot(path=str(shots / f"{slug}-2-widget{k}-before.png"))
        rep.screenshots.append(shots / f"{slug}-2-widget{k}-before.png")

    moved = None
    keys = ("ArrowLeft", "ArrowRight") if before["atMax"] else ("ArrowRight", "ArrowLeft")
    for key in keys:  # ArrowLeft if the slider sits at its maximum
        handle.focus()
        page.keyboard.press(key)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            cur = page.evaluate(_FIGURE_JS, [k, j])
            if cur and (cur["value"], cur["aria"]) != (before["value"], before["aria"]):
                moved = key
                break
            page.wait_for_timeout(100)
        if moved:
            break
    if not moved:
        rep.problems.append(
            Problem(
                "figure-unchanged",
                f"{label}: ArrowRight/ArrowLeft on the slider handle did not change its value ({before['value']})",
                w["cell"] + 1,
            )
        )
        return

    t0 = time.monotonic()
    after = page.evaluate(_FIGURE_JS, [k, j])
    while time.monotonic() - t0 < timeout:
        after = page.evaluate(_FIGURE_JS, [k, j])
        if after and after["nfig"] > 0 and after["fig"] != before["fig"]:
            break
        page.wait_for_timeout(200)
    page.wait_for_timeout(300)  # let the new image paint before the screenshot
    after = page.evaluate(_FIGURE_JS, [k, j])
    shot = shots / f"{slug}-3-{tag}-after-{moved}.png"
    root.screenshot(path=str(shot))
    rep.screenshots.append(shot)
    changed = after and after["nfig"] > 0 and after["fig"] != before["fig"]
    digest = lambda s: hashlib.sha1(s.encode()).hexdigest()[:10]  # noqa: E731
    rep.slider_moves.append(
        f"{label}: {moved} {before['value']} -> {after and after['value']}, figure "
        f"{digest(before['fig'])} -> {digest(after['fig']) if after else None} "
        f"({'changed' if changed else 'UNCHANGED'})"
    )
    if not changed:
        rep.problems.append(
            Problem(
                "figure-unchanged",
                f"{label}: slider moved {before['value']} -> {after and after['value']} but the figure stayed the same for {timeout:.0f} s",
                w["cell"] + 1,
            )
        )


# --------------------------------------------------------------------------------------------
# Fixture notebooks (positive and negative controls of the checks)
# --------------------------------------------------------------------------------------------
_IMPORTS = (
    "%matplotlib inline\n"
    "import numpy as np\n"
    "import matplotlib.pyplot as plt\n"
    "import ipywidgets as widgets\n"
    "from IPython.display import display"
)


# The control notebook: code cells 1-6 must pass every check; 7-10 each carry one known failure.
CONTROL_EXPECTED_PROBLEMS = {
    7: "figure-unchanged",  # a slider whose figure ignores it
    8: "widget-not-rendered",  # a widget output whose model does not exist ("model not found")
    9: "error-output",  # a traceback
    10: "not-executed",  # never reached: Run All stops at the error
}
CONTROL_GOOD_WIDGETS = 2  # code cells 3 and 4: IntSlider and FloatSlider driving figures


def write_fixture_notebook(path: Path) -> Path:
    """Write the small control notebook, in the course's slider pattern: a plain plotting function
    called directly (static figure), then shown through `ipywidgets.interactive(plot_fn,
    t=IntSlider(...))` and a FloatSlider version, an empty cell, an assert; then the negative
    controls listed in CONTROL_EXPECTED_PROBLEMS (code-cell numbers, 1-based)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    cells = [
        new_markdown_cell(
            "# Browser-test control notebook\nSliders drive matplotlib figures; the last "
            "cells fail on purpose, so the test can see that its checks catch failures."
        ),
        # code cell 1
        new_code_cell(
            "%matplotlib inline\n"
            "import numpy as np\n"
            "import matplotlib.pyplot as plt\n"
            "import ipywidgets as widgets\n"
            "from IPython.display import display"
        ),
        # code cell 2
        new_code_cell(
            "def plot_wave(t):\n"
            "    x = np.linspace(0.0, 1.0, 400)\n"
            "    fig, ax = plt.subplots(figsize=(5, 3))\n"
            "    ax.plot(x, np.sin(2 * np.pi * t * x))\n"
            "    ax.set_xlabel('x'); ax.set_ylabel('sin(2 pi t x)'); ax.set_title(f't = {t}')\n"
            "    plt.show()\n\n"
            "plot_wave(3)"
        ),
        # code cell 3
        new_code_cell(
            "w_int = widgets.interactive(plot_wave, t=widgets.IntSlider(min=1, max=10, value=3, description='t'))\n"
            "display(w_int)"
        ),
        # code cell 4 (starts at its maximum: the test must fall back to ArrowLeft)
        new_code_cell(
            "def plot_gauss(sigma):\n"
            "    x = np.linspace(-4.0, 4.0, 400)\n"
            "    fig, ax = plt.subplots(figsize=(5, 3))\n"
            "    ax.plot(x, np.exp(-x**2 / (2 * sigma**2)) / (sigma * np.sqrt(2 * np.pi)))\n"
            "    ax.set_xlabel('x'); ax.set_ylabel('density'); ax.set_title(f'sigma = {sigma:.2f}')\n"
            "    plt.show()\n\n"
            "display(widgets.interactive(plot_gauss, sigma=widgets.FloatSlider(min=0.2, max=2.0, step=0.1, value=2.0)))"
        ),
        # code cell 5: empty -- JupyterLab leaves it unnumbered, the checks must allow that
        new_code_cell(""),
        # code cell 6
        new_code_cell("assert w_int.children[0].value >= 1, 'the slider value is a timestep t >= 1'"),
        # code cell 7: negative control -- the figure ignores the slider
        new_code_cell(
            "def constant_plot(t):\n"
            "    fig, ax = plt.subplots(figsize=(4, 3))\n"
            "    ax.plot([0, 1], [0, 1]); ax.set_xlabel('x'); ax.set_ylabel('y'); ax.set_title('ignores t')\n"
            "    plt.show()\n\n"
            "display(widgets.interactive(constant_plot, t=widgets.IntSlider(min=1, max=5, value=2)))"
        ),
        # code cell 8: negative control -- what a student sees as "Error displaying widget: model not found"
        new_code_cell(
            "display({'application/vnd.jupyter.widget-view+json':\n"
            "         {'model_id': '0123456789abcdef0123456789abcdef', 'version_major': 2, 'version_minor': 0},\n"
            "         'text/plain': 'a widget whose model does not exist'}, raw=True)"
        ),
        # code cell 9: negative control -- a traceback
        new_code_cell("raise ValueError('deliberate error: negative control of the browser test')"),
        # code cell 10: negative control -- never executed
        new_code_cell("never_reached = True"),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
