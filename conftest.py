"""Test-session settings shared by tests/ and the notebooks that nbval runs.

- Fast mode (EDUDIFF_FAST=1) is the default under pytest, so the training notebooks finish on a
  2-core CPU; set EDUDIFF_FAST=0 to test the full mode.
- If EDUDIFF_DATA is unset and the course's offline datasets sit at ../shared/datasets, use them.
- Under pytest-xdist (`make test` runs a worker per core, at most 4), each worker and the notebook kernels it
  starts use one OpenMP thread (OMP_NUM_THREADS=1 unless set): the workers already fill the cores, and more threads
  than cores spin-wait on each other.
The notebook kernels nbval starts inherit these variables.
"""

import os
from pathlib import Path

os.environ.setdefault("EDUDIFF_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
_shared = Path(__file__).resolve().parent.parent / "shared" / "datasets"
if "EDUDIFF_DATA" not in os.environ and _shared.is_dir():
    os.environ["EDUDIFF_DATA"] = str(_shared)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
