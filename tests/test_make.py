"""The Makefile's test targets (README "Which test command does what"), read from `make -n` (what make would run).

- `make test` runs in parallel under pytest-xdist with ``--dist loadscope``: nbval's cells depend on the cells
  before them in the same kernel, so a notebook split across workers fails (nbval's README, "Parallel execution").
- `make test-all` (CI) is `make test`, then the slow and browser tests, then the site: together every test exactly
  once, whatever markers it carries.
"""

from __future__ import annotations

import itertools
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

REPO = Path(__file__).resolve().parent.parent
MARKERS = ("slow", "browser", "site")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make_dry_run(*args: str) -> list[str]:
    """The pytest command lines that ``make -n ARGS`` prints, sub-makes' included (make runs nothing else)."""
    out = subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if " -m pytest " in line]


def marker_expression(command: str) -> str:
    """The ``-m`` argument of a pytest command line."""
    words = shlex.split(command.split(" -m pytest ", 1)[1])
    return words[words.index("-m") + 1]


def test_make_test_keeps_each_notebook_in_one_worker():
    (command,) = make_dry_run("test")
    assert "--nbval notebooks" in command
    assert re.search(r"-n auto\b", command) and "--dist loadscope" in command, command
    assert marker_expression(command) == "not slow and not browser and not site"
    (serial,) = make_dry_run("test", "WORKERS=0")
    assert " -n " not in serial and "--dist" not in serial, f"WORKERS=0 must run in one process: {serial}"


def test_make_test_all_runs_every_test_once():
    commands = make_dry_run("test-all")
    assert make_dry_run("test")[0] in commands, "make test-all must run make test as it is"
    expressions = [Expression.compile(marker_expression(c)) for c in commands]
    for n in range(len(MARKERS) + 1):
        for marks in itertools.combinations(MARKERS, n):
            runs = sum(e.evaluate(lambda name, marks=marks: name in marks) for e in expressions)
            assert runs == 1, f"a test marked {marks or 'nothing'} runs {runs} times in make test-all"
