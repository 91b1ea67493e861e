"""The locks (requirements/py3.X.txt, written by `make upgrade` = .ci/lock.sh): one per supported Python, each
pinning every dependency that pyproject.toml declares to one exact version inside its declared range, and none of
torch or its CUDA-only libraries (the Makefile installs torch, pinned by TORCH, CPU or CUDA build by machine)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
LOCK_SCRIPT = (REPO / ".ci" / "lock.sh").read_text(encoding="utf-8")
SUPPORTED = re.search(r"^PYTHONS=\(([^)]*)\)", LOCK_SCRIPT, re.M).group(1).split()
TORCH_AND_CUDA = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")


def _environment(python: str) -> dict:
    """A Linux x86-64 CPython ``python`` (e.g. "3.12"), for evaluating markers."""
    return {"python_version": python, "python_full_version": f"{python}.0", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython"}  # fmt: skip


def _pins(python: str) -> dict[str, Requirement]:
    """The lock's requirements that apply to ``python`` on Linux, by normalised name."""
    pins = {}
    for line in (REPO / "requirements" / f"py{python}.txt").read_text(encoding="utf-8").splitlines():
        if not re.match(r"^[A-Za-z0-9]", line):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(_environment(python)):
            name = canonicalize_name(req.name)
            assert name not in pins, f"py{python}.txt pins {name} twice for Python {python}"
            pins[name] = req
    return pins


def _declared(python: str) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = ["test"] + (["site"] if python != "3.10" else [])  # the site's pins need Python >= 3.11
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in extras for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate(_environment(python))]


def test_every_supported_python_has_a_lock():
    assert SUPPORTED == ["3.10", "3.11", "3.12", "3.13"], SUPPORTED
    locks = sorted(p.name for p in (REPO / "requirements").glob("py*.txt"))
    assert locks == [f"py{v}.txt" for v in SUPPORTED], f"{locks}: run `make upgrade` to write the missing ones"


@pytest.mark.parametrize("python", SUPPORTED)
def test_lock_pins_every_declared_dependency_within_its_range(python):
    pins = _pins(python)
    problems = []
    for req in _declared(python):
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{name} ({req.specifier}) is not in the lock")
            continue
        (spec,) = pin.specifier
        if spec.operator != "==" or not req.specifier.contains(spec.version, prereleases=True):
            problems.append(f"{name}: the lock says {pin.specifier}, pyproject.toml allows {req.specifier}")
    assert not problems, f"requirements/py{python}.txt is out of date; run `make upgrade`:\n" + "\n".join(problems)
    loose = [str(p) for p in pins.values() if [s.operator for s in p.specifier] != ["=="]]
    assert not loose, f"requirements/py{python}.txt has requirements that are not exact pins: {loose}"


@pytest.mark.parametrize("python", SUPPORTED)
def test_lock_leaves_torch_to_the_makefile(python):
    text = (REPO / "requirements" / f"py{python}.txt").read_text(encoding="utf-8")
    names = [canonicalize_name(Requirement(x).name) for x in text.splitlines() if re.match(r"^[A-Za-z0-9]", x)]
    assert not [n for n in names if TORCH_AND_CUDA.match(n)], "torch and its CUDA libraries must not be locked"
    torch_pin = re.search(r"^TORCH \?= (\S+)", (REPO / "Makefile").read_text(encoding="utf-8"), re.M).group(1)
    assert f"resolved with {torch_pin} " in text, (
        f"requirements/py{python}.txt was resolved with another torch than the Makefile's {torch_pin}: "
        "run `make upgrade`"
    )
