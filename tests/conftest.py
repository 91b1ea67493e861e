"""Fixtures shared by every test file (the repository's conftest.py sets EDUDIFF_FAST/EDUDIFF_DATA)."""

import http.server
import threading
import types
from collections import Counter

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The tests' tensors are small: one intra-op thread is faster than two, and it avoids OpenMP
    spin-waits that make a busy 2-core machine 10x slower. Restored after each test."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def server(monkeypatch):
    """A local HTTP server: ``state.files[path] = bytes`` serves them; ``state.modes[path]`` is
    "ok", "fail_once" (503 on the first request), or "truncate" (announces the full length,
    sends half, closes). ``state.hits`` counts requests per path."""
    state = types.SimpleNamespace(files={}, modes={}, hits=Counter())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state.hits[self.path] += 1
            body, mode = state.files.get(self.path), state.modes.get(self.path, "ok")
            if body is None:
                return self.send_error(404)
            if mode == "fail_once" and state.hits[self.path] == 1:
                return self.send_error(503)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    yield state
    httpd.shutdown()
    httpd.server_close()
