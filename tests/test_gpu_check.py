"""benchmarks/gpu_check.py: its helpers, its limits against the notebooks' own, and its dry run on the CPU.

The GPU mode itself needs a CUDA machine; the dry run goes through the same code with tiny models, so what it
checks here -- the budget that stops a run, the extrapolation, every figure, the JSON and the table -- is what a
GPU run will write.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dataset_paths import DATA, needs_mnist

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CIFAR_DIRS = (DATA / "cifar-10-batches-py", DATA / "cifar-10-subset" / "cifar-10-batches-py")
HAVE_CIFAR = any((d / "data_batch_1").is_file() for d in CIFAR_DIRS)


def _load():
    spec = importlib.util.spec_from_file_location("edudiff_gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gc = _load()


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------
def test_steady_rate_leaves_out_the_slow_start():
    # 10 slow steps (1 s each: start-up), then 90 at 0.1 s: 10 steps/s once running
    marks, t = [], 0.0
    for step in range(1, 101):
        t += 1.0 if step <= 10 else 0.1
        marks.append((step, t))
    r = gc.steady_rate(marks)
    assert r["steps_per_sec"] == pytest.approx(10.0, rel=1e-9)
    assert r["from_step"] >= 10 and r["to_step"] == 100
    everything = (100 - 1) / (marks[-1][1] - marks[0][1])
    assert everything < 6, "the control: counting the start-up would give a much lower rate"
    assert math.isnan(gc.steady_rate([(1, 0.5)])["steps_per_sec"]), "one mark gives no rate"


def test_full_run_is_measured_or_labelled_extrapolated():
    done = gc.full_run(30_000, 30_000, 100.0, 480.0)
    assert done == {"minutes": 8.0, "extrapolated": False, "label": "measured: all steps done (wall clock)"}
    part = gc.full_run(3_000, 30_000, 20.0, 150.0)
    assert part["extrapolated"] and part["minutes"] == pytest.approx(30_000 / 20 / 60)
    assert part["label"].startswith("EXTRAPOLATED from 3000 of 30000 steps")
    assert gc.full_run(1, 30_000, float("nan"), 1.0)["minutes"] is None


def test_plan_budget_keeps_room_for_the_later_checks():
    # 8 minutes left; later checks need 3.25, this check's evaluation 0.75: the full 2.5 fits
    assert gc.plan_budget(2.5, 8 * 60, 3.25, 0.75, 0.25) == 2.5
    assert gc.plan_budget(2.5, 5 * 60, 3.25, 0.75, 0.25) == pytest.approx(1.0)  # cut
    assert gc.plan_budget(2.5, 4 * 60, 3.25, 0.75, 0.25) is None  # skipped: nothing left


def test_threshold_status_is_unmeasured_unless_a_gpu_did_all_the_steps():
    th = {"figure": "loss", "kind": "max", "limit": 0.06, "source": "x"}
    assert gc.threshold_status(th, 0.05, "dry-run", True, 8, "cpu")["status"].startswith("unmeasured: dry run")
    partial = gc.threshold_status(th, 0.05, "gpu", False, 900, "H100")
    assert partial["status"].startswith("unmeasured for the full run") and "within" in partial["status"]
    assert gc.threshold_status(th, 0.05, "gpu", True, 30_000, "H100")["status"].startswith(
        "measured on H100: 0.05 passes"
    )
    assert "FAILS" in gc.threshold_status(th, 0.07, "gpu", True, 30_000, "H100")["status"]
    low = {"figure": "confident_fraction", "kind": "min", "limit": 0.9, "source": "x"}
    assert gc.threshold_status(low, 0.8, "gpu", True, 1, "H100")["within_limit"] is False
    assert gc.threshold_status(th, None, "gpu", True, 1, "H100")["status"] == "unmeasured: the figure is missing"


def test_loss_summary():
    import torch

    losses = torch.linspace(1.0, 0.01, 200)
    s = gc.loss_summary(losses)
    assert s["after_steps"] == 200 and s["window"] == 10
    assert s["mean_last"] == pytest.approx(float(losses[-10:].mean()))
    assert [c[0] for c in s["curve"]] == list(range(20, 201, 20))
    assert s["curve"][0][1] == pytest.approx(float(losses[:20].mean()))


def test_unknown_check_says_what_to_use():
    with pytest.raises(SystemExit, match="use a comma-separated list of 06, 07, 08"):
        gc.choose_checks("06,09")
    assert gc.choose_checks("07") == ["07"]


def _assignments(notebook: Path) -> dict:
    """Top-level `NAME = literal` assignments of a notebook's code cells."""
    found = {}
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        for line in src.split("\n"):
            m = re.match(r"^([A-Z_]+) = (\{.*\})\s*$", line)
            if m:
                found[m.group(1)] = ast.literal_eval(m.group(2))
    return found


def test_limits_are_the_notebooks():
    """The limits the script reports against are the ones the notebooks check in the same modes: when a GPU run
    calibrates a notebook's limit, this test asks for the same change in benchmarks/gpu_check.py."""
    nb06 = _assignments(REPO / "notebooks" / "06_unet_mnist.ipynb")
    limits = {t["figure"]: t["limit"] for t in gc.THRESHOLDS["06"]}
    assert limits["loss"] == nb06["LOSS_MAX"]["gpu"]
    assert limits["bits_per_dim"] == nb06["BPD_MEASURED_PER_MODE"]["gpu"][0]
    assert (limits["confident_fraction"], limits["fd_over_noise_fd"]) == nb06["QUALITY_PER_MODE"]["gpu"]
    cells = json.loads((REPO / "notebooks" / "07_cifar10.ipynb").read_text(encoding="utf-8"))["cells"]
    nb07 = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    full_mode = re.findall(r"limit = .* if FAST else ([0-9.]+)", nb07)
    assert [float(x) for x in full_mode] == [gc.THRESHOLDS["07"][0]["limit"]], full_mode


# ------------------------------------------------------------------------------------------------
# The dry run
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@needs_mnist
@pytest.mark.skipif(not HAVE_CIFAR, reason=f"CIFAR-10 (or the course's subset) not found under {DATA}")
def test_dry_run_without_a_gpu(tmp_path):
    out = tmp_path / "report.json"
    # No --dry-run: without CUDA (hidden here even on a GPU machine) the script says so and runs the dry run.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "EDUDIFF_DATA": str(DATA)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--checks", "06,07,08", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no CUDA device" in proc.stdout and "running the DRY RUN instead" in proc.stdout
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["mode"] == "dry-run" and report["wall_seconds"] < 120, report["wall_seconds"]
    checks = {c["id"]: c for c in report["checks"]}
    assert list(checks) == ["06", "07", "08"] and all(c["status"] == "ran" for c in checks.values())

    # 06: the budget ends a run it cannot finish -> how far it got, and the full run extrapolated, labelled so
    c06 = checks["06"]
    assert not c06["reached_full_steps"] and c06["stop_reason"] == "wall-clock budget"
    assert 0 < c06["steps_done"] < c06["steps_full"]
    assert c06["full_run"]["extrapolated"] and c06["full_run"]["label"].startswith("EXTRAPOLATED")
    assert c06["full_run"]["minutes"] > c06["train_wall_seconds"] / 60
    # 07: a run that finishes reports its measured time
    c07 = checks["07"]
    assert c07["reached_full_steps"] and not c07["full_run"]["extrapolated"]
    assert c07["dataset_note"].startswith("the full" if c07["train_images"] == 50_000 else "only"), c07["dataset_note"]
    for c in checks.values():
        assert c["images_per_sec"] > 0 and math.isfinite(c["images_per_sec"])
        assert c["loss"]["after_steps"] == c["steps_done"] and math.isfinite(c["loss"]["mean_last"])
        assert Path(c["samples_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert all(t["status"].startswith("unmeasured") for t in c["thresholds"]), c["thresholds"]
    for c in (c06, checks["08"]):
        q = c["quality"]
        assert 0 <= q["confident_fraction"] <= 1 and math.isfinite(q["fd"]) and q["fd_noise"] > 0
    assert 0 <= checks["08"]["quality"]["label_accuracy"] <= 1
    for c in (c06, c07):
        assert c["bits_per_dim"]["bpd"] > 0 and math.isfinite(c["bits_per_dim"]["bpd"])
    assert len(c06["thresholds"]) == 4 and len(c07["thresholds"]) == 1

    table = out.with_suffix(".md").read_text(encoding="utf-8")
    assert table in proc.stdout
    assert all(f"| {c} |" in table for c in checks) and "EXTRAPOLATED" in table and "unmeasured" in table
