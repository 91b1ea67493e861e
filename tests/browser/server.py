"""JupyterLab for the browser tests: the system Chromium's location and a throw-away `jupyter lab` server.

`LabServer` starts `jupyter lab --notebook-dir=<dir> --port=<free port>` -- the README's `make lab` command --
plus test-only arguments (127.0.0.1, a token, --no-browser) and throw-away JUPYTER_CONFIG/DATA/RUNTIME dirs and
JupyterLab user settings, so nothing of the user's is touched: autosave off (the notebooks in the repo stay
without outputs), no news/update checks, and windowing off (every cell stays in the DOM).
"""

from __future__ import annotations

import contextlib
import json
import os
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
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        # anything else the server started in its own process group (terminals)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

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
