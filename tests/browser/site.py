"""Checks of the course website (tests/test_site.py): a static folder served on 127.0.0.1, each page opened in
headless Chromium (the browser tests' `find_chromium` / `CHROMIUM_ARGS`), and a plain scan of the built files for
solution text.

- `serve(folder)`: a threading http.server on 127.0.0.1 (context manager, yields the base URL).
- `check_page(page, url, shot)`: opens one page, waits for MathJax, and returns a `PageReport` whose `problems`
  are (kind, detail) pairs, kinds in `PAGE_PROBLEM_KINDS`.
- `solution_lines(notebooks)` / `find_solution_text(folder, lines)`: the distinctive lines of the notebooks'
  `### BEGIN SOLUTION` regions, and where any of them occurs in a built site (HTML read as its visible text).
- `write_control_site(folder)`: a small site with one good page and one bad page whose known failures
  (`CONTROL_SITE_EXPECTED`) the checks must report.

Only the standard library is imported at module level; playwright objects are passed in.
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .page import MAX_SCREENSHOT_HEIGHT, VIEWPORT

PAGE_PROBLEM_KINDS = (
    "console-error",  # console.error(...) or an uncaught exception (pageerror)
    "external-request",  # a request to a host other than 127.0.0.1 / localhost (data: and blob: are fine)
    "raw-math",  # $...$, $$, \( or \[ left in the visible text (outside code)
    "math-not-typeset",  # a Sphinx .math element without a MathJax rendering inside
    "broken-image",  # an <img> with naturalWidth 0
    "dead-widget",  # "Loading widget...", "Error displaying widget", a widget printed as interactive(children=...)
)
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
MATHJAX_TIMEOUT_MS = 30_000

# Visible text outside code, the .math elements and whether each holds a MathJax rendering, the images.
PAGE_STATE_JS = r"""
async () => {
  const imgs = [...document.images];
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  const clone = document.body.cloneNode(true);
  const skip = 'pre, code, script, style, mjx-container, mjx-assistive-mml, .MathJax';
  clone.querySelectorAll(skip).forEach(e => e.remove());
  const math = [...document.querySelectorAll('.math')];
  return {
    title: document.title,
    text: clone.textContent,
    math: math.length,
    mathUntypeset: math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
    mjx: document.querySelectorAll('mjx-container').length,
    images: imgs.map(img => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0,
                              width: img.naturalWidth})),
    height: document.documentElement.scrollHeight,
  };
}
"""
RAW_MATH = re.compile(r"\$\$|\\\(|\\\[|\$[^\s$][^$\n]{0,200}?\$")
DEAD_WIDGET = re.compile(r"Loading widget|Error displaying widget|interactive\(children=")


@dataclass
class PageReport:
    url: str
    title: str = ""
    problems: list = field(default_factory=list)  # (kind, detail)
    requests: list = field(default_factory=list)
    n_math: int = 0
    n_images: int = 0
    seconds: float = 0.0

    def kinds(self) -> set:
        return {k for k, _ in self.problems}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder: Path):
    """Serve `folder` on 127.0.0.1 (a free port); yields the base URL, e.g. http://127.0.0.1:41234/."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def is_local(url: str) -> bool:
    p = urlparse(url)
    if p.scheme in ("data", "blob", "about"):
        return True
    return p.scheme in ("http", "https", "ws", "wss") and p.hostname in LOCAL_HOSTS


def check_page(page, url: str, shot: Path | None = None) -> PageReport:
    """Open `url` in `page` (a fresh playwright Page), wait for MathJax, return its problems."""
    import time

    t0 = time.monotonic()
    rep = PageReport(url)
    page.on("request", lambda r: rep.requests.append(r.url))
    page.on(
        "console",
        lambda m: (
            m.type == "error"
            and rep.problems.append(("console-error", f"{m.text[:300]} [{(m.location or {}).get('url', '')}]"))
        ),
    )
    page.on("pageerror", lambda e: rep.problems.append(("console-error", f"uncaught: {e}"[:300])))
    page.goto(url, wait_until="load")
    # MathJax 3 typesets after load: wait for its startup promise (pages without math have no MathJax).
    page.evaluate(
        """(ms) => new Promise(resolve => {
             if (!window.MathJax || !window.MathJax.startup) return resolve(false);
             const t = setTimeout(() => resolve('timeout'), ms);
             window.MathJax.startup.promise.then(() => { clearTimeout(t); resolve(true); });
           })""",
        MATHJAX_TIMEOUT_MS,
    )
    with contextlib.suppress(Exception):  # a page that keeps polling: check it as it is
        page.wait_for_load_state("networkidle", timeout=10_000)
    st = page.evaluate(PAGE_STATE_JS)
    rep.title, rep.n_math, rep.n_images = st["title"], st["math"], len(st["images"])
    text = " ".join(st["text"].split())
    for m in RAW_MATH.finditer(text):
        rep.problems.append(("raw-math", text[max(0, m.start() - 40) : m.end() + 40]))
    for t in st["mathUntypeset"]:
        rep.problems.append(("math-not-typeset", t))
    for img in st["images"]:
        if not img["ok"]:
            rep.problems.append(("broken-image", img["src"][:200]))
    for m in DEAD_WIDGET.finditer(text):
        rep.problems.append(("dead-widget", text[max(0, m.start() - 40) : m.end() + 40]))
    for r in rep.requests:
        if not is_local(r):
            rep.problems.append(("external-request", r[:200]))
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        h = min(int(st["height"]), MAX_SCREENSHOT_HEIGHT)
        page.screenshot(path=str(shot), full_page=True, clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": h})
    rep.seconds = time.monotonic() - t0
    return rep


# ------------------------------------------------------------------------------------------------
# Solutions: the distinctive lines of the notebooks' solution regions, searched in the built files
# ------------------------------------------------------------------------------------------------
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MIN_LINE = 20  # characters (whitespace collapsed); shorter lines ("return mean, var", "half = dim // 2") prove nothing


def _norm(line: str) -> str:
    return " ".join(line.split())


def solution_lines(notebooks) -> list[tuple[str, str]]:
    """(notebook name, line) for each distinctive line inside a `### BEGIN SOLUTION` region: at least
    MIN_LINE characters, not a comment, and not also a line outside the solution regions of any notebook
    (such a line may appear on the site for other reasons)."""
    inside, outside = [], set()
    for path in notebooks:
        nb = json.loads(Path(path).read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            in_region = False
            for line in src.splitlines():
                s = line.strip()
                if s == BEGIN:
                    in_region = True
                elif s == END:
                    in_region = False
                elif in_region:
                    inside.append((Path(path).name, _norm(line)))
                else:
                    outside.add(_norm(line))
    return [(n, s) for n, s in inside if len(s) >= MIN_LINE and not s.startswith("#") and s not in outside]


def _visible_text(path: Path) -> str:
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        raw = html.unescape(re.sub(r"<[^>]+>", "", raw))  # Pygments splits code lines into <span>s
    elif path.suffix == ".ipynb":
        nb = json.loads(raw)
        parts = []
        for cell in nb.get("cells", []):
            parts.append(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"]))
            for out in cell.get("outputs", []):
                parts.append(json.dumps(out))
        raw = "\n".join(parts)
    return raw


def find_solution_text(folder: Path, lines) -> list[tuple[str, str, str]]:
    """(file, notebook, line) for every solution line found in a text file of `folder`."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".ipynb", ".js", ".txt", ".json", ".md", ".py"):
            continue
        if "mathjax" in path.parts:
            continue  # the bundled MathJax
        text = " ".join(_visible_text(path).split())
        for nb, line in lines:
            if line in text:
                found.append((str(path.relative_to(folder)), nb, line))
    return found


# ------------------------------------------------------------------------------------------------
# The control site
# ------------------------------------------------------------------------------------------------
CONTROL_SITE_EXPECTED = {
    "bad.html": {"console-error", "external-request", "raw-math", "math-not-typeset", "broken-image", "dead-widget"},
    "good.html": set(),
}


def write_control_site(folder: Path, mathjax: Path | None) -> Path:
    """good.html: math typeset by the bundled MathJax (copied from `mathjax`, the site's _static/mathjax), a
    data: image. bad.html: one of each failure in PAGE_PROBLEM_KINDS."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = "data:image/png;base64," + (  # one grey pixel
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    head = ""
    if mathjax is not None:
        shutil.copytree(mathjax, folder / "mathjax", dirs_exist_ok=True)
        head = '<script defer src="mathjax/tex-chtml.js"></script>'
    (folder / "good.html").write_text(
        f"<!doctype html><html><head><title>good</title>{head}</head><body>"
        '<p>Inline <span class="math notranslate nohighlight">\\(x_t = \\sqrt{\\bar\\alpha_t}\\,x_0\\)</span>.</p>'
        f'<img src="{png}" alt="dot"><pre>cost = $5 in code is fine</pre></body></html>',
        encoding="utf-8",
    )
    (folder / "bad.html").write_text(
        "<!doctype html><html><head><title>bad</title>"
        '<link rel="stylesheet" href="http://cdn.example.invalid/theme.css"></head><body>'
        "<p>A raw formula $x$ never typeset.</p>"
        '<p><span class="math notranslate nohighlight">\\(y\\)</span> (no MathJax on this page)</p>'
        '<img src="missing.png" alt="broken">'
        "<div>Loading widget...</div>"
        "<script>console.error('deliberate console error: control page of tests/test_site.py')</script>"
        "</body></html>",
        encoding="utf-8",
    )
    return folder
