"""Every benchmark script still imports (a moved or renamed package name breaks a script that no other test runs),
and has the documented entry point."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_benchmark_script_imports_and_has_a_main(path):
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs the imports; the work itself sits behind `if __name__ == "__main__"`
    assert callable(getattr(module, "main", None)), f"{path.name} should define main(argv=None)"
