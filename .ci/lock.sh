#!/usr/bin/env bash
# Write the locks: requirements/py3.X.txt, the exact versions of everything `pip install -e ".[test]"` and
# `".[site]"` install (3.10: ".[test]" only), one file per supported Python, resolved by uv for every platform (Linux, macOS, Windows).
# `make install`, `make lab`, `make test` and `make site` install with `-c requirements/py3.X.txt` (a constraints
# file: it fixes the version of whatever they install). `make upgrade` runs this script; commit the result once
# `bash .ci/run` passes with it.
#
#   bash .ci/lock.sh UV TORCH_SPEC        e.g. bash .ci/lock.sh .venv/bin/uv torch==2.13.0
#
# torch is left out of the locks, with the CUDA libraries that only its CUDA build needs (nvidia-*, triton, cuda-*):
# the Makefile installs torch first, pinned by its TORCH variable, from PyTorch's CPU index on machines without an
# NVIDIA driver; a lock that named them would pull the CUDA build's 3 GB onto CPU machines. torch's other
# dependencies (sympy, networkx, jinja2, ...) are resolved with torch held at TORCH_SPEC, and locked.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${1:?usage: bash .ci/lock.sh UV TORCH_SPEC (make upgrade passes them)}
torch_spec=${2:?usage: bash .ci/lock.sh UV TORCH_SPEC (make upgrade passes them)}
PYTHONS=(3.10 3.11 3.12 3.13)   # the supported Pythons; tests/test_lock.py checks that each has its lock

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "$torch_spec" >"$work/torch.txt"
mkdir -p requirements
for py in "${PYTHONS[@]}"; do
  out=requirements/py$py.txt
  extras=(--extra test --extra site)
  # The site extra's pins (sphinx 8.2, myst-parser 5.2) need Python >= 3.11: the 3.10 lock covers .[test] only.
  [ "$py" = 3.10 ] && extras=(--extra test)
  common=(pyproject.toml "${extras[@]}" --universal --python-version "$py" --constraint "$work/torch.txt"
          --upgrade --quiet --custom-compile-command "make upgrade")
  # First pass: the full resolution, to find the names of torch's CUDA-only dependencies on this Python.
  "$uv" pip compile "${common[@]}" --output-file "$work/all.txt"
  no_emit=()
  while read -r name; do no_emit+=(--no-emit-package "$name"); done < <(
    grep -oE '^(torch|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)(==| )' "$work/all.txt" | sed -E 's/(==| )$//' | sort -u)
  "$uv" pip compile "${common[@]}" "${no_emit[@]}" --output-file "$work/lock.txt"
  { echo "# The lock for Python $py: resolved with $torch_spec (the Makefile's TORCH), which is not listed here; nor"
    echo "# are the CUDA build's own dependencies. Installed as a constraints file by make install (pip -c)."
    cat "$work/lock.txt"; } >"$out"
  echo "lock.sh: $out: $(grep -cE '^[A-Za-z0-9]' "$out") pinned requirement lines (left out: $(( ${#no_emit[@]} / 2 )) torch/CUDA packages)"
done
