"""The GPU check: each GPU mode of the course, trained for a time budget on one CUDA GPU, with its figures.

    python benchmarks/gpu_check.py                         # on a CUDA machine: at most --total-minutes (8) in all
    python benchmarks/gpu_check.py --dry-run               # anywhere: tiny models on the CPU, well under a minute
    python benchmarks/gpu_check.py --checks 06 --minutes-06 12   # one mode, a longer budget

The checks (``--checks``, default ``auto``: 06 and 07, and 08 once ``notebooks/08_*.ipynb`` exists):

* ``06``: notebook 06's GPU full mode, ``TrainConfig.recommended("mnist", fast=False, device="cuda")``
  (``mnist_small``, 30k steps at batch 128), for ``--minutes-06`` minutes, then scored as the notebook scores it:
  1000 samples from Algorithm 2, the MNIST classifier's confident fraction and Fréchet distance (FD), and the
  bits/dim bound on 500 test images with all T terms.
* ``07``: a budget version of the paper's CIFAR-10 recipe, ``TrainConfig.recommended("cifar10", fast=False,
  device="cuda")`` (``ddpm_cifar10``, 35.7M parameters, 800k steps at batch 128): the paper's model trained for
  ``--minutes-07`` minutes, then the bits/dim bound on test images (a stratified estimate, ``--bpd-timesteps-07``
  terms per image). Notebook 07's own full mode trains the smaller ``cifar10_small``; this check measures the
  paper's model, which is what "one GPU hour" in notebook 07 is about.
* ``08``: class-conditional MNIST (notebook 08, being written): 06's GPU recipe with ``class_conditional()``, for
  ``--minutes-08`` minutes; samples drawn for the labels 0..9 in turn, scored as in 06, plus the share of samples
  that the classifier labels as the class they were drawn for.

For each check: images/s (wall clock, steady state: the first 10% of the steps left out), the loss after the
steps done (mean of the last 5% of steps, and a 10-point curve), how far the budget got, the full run's time
(measured, or EXTRAPOLATED from the steady rate and labelled so when the budget ends first), the figures above,
and the notebook's limits with their status. Everything goes to ``--out`` (JSON), a short table to the screen
and to the same path with ``.md``; sample grids beside it.

The budgets: ``--total-minutes`` (default 8) bounds the whole run from the script's start, imports and CUDA
start-up included. Each check's training budget is cut, or the check skipped, when what is left would not cover
it and an evaluation margin (``EVAL_MARGIN``: planning guesses, not measurements). The defaults (06: 2.5, 07: 2,
08: 1 minutes of training) are sized for one H100 from the work involved; no GPU has run them yet.

Without CUDA the script says so and runs the dry run: tiny models on the CPU for seconds each, the same code path
otherwise; its figures say nothing about the GPU modes, and every limit stays marked unmeasured.

Data: ``$EDUDIFF_DATA`` (MNIST; CIFAR-10, or the course's CIFAR-10 subset, which the JSON then names). A GPU
machine without the network needs them copied beside the repository (``--data-root``).
"""

from __future__ import annotations

import time

T_START = time.monotonic()  # the total budget counts the imports and CUDA's start-up too

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's edudiff, installed or not (a bare GPU machine)

import torch  # noqa: E402

from edudiff.config import default_device  # noqa: E402
from edudiff.data import load_dataset  # noqa: E402
from edudiff.images.evaluate import nll_bits_per_dim, zero_eps_model  # noqa: E402
from edudiff.images.generate import sample_images  # noqa: E402
from edudiff.images.imageio import save_image_grid  # noqa: E402
from edudiff.images.sample_quality import classifier_outputs, load_or_train_classifier, mnist_sample_quality  # noqa: E402
from edudiff.training import TrainConfig, train  # noqa: E402

CHECKS = ("06", "07", "08")
#: Training minutes per check on the GPU (the --minutes-NN defaults): with the evaluation margins and the start-up,
#: 06 + 07 + 08 fit in the default --total-minutes of 8.
DEFAULT_MINUTES = {"06": 2.5, "07": 2.0, "08": 1.0}
#: Minutes kept free for each check's evaluation when the budgets are planned: guesses from the work involved
#: (06: 1000 x 1000 U-Net passes for the samples, 500 x 1000 for bits/dim), not measurements.
EVAL_MARGIN = {"gpu": {"06": 0.75, "07": 0.5, "08": 0.5}, "dry-run": {"06": 0.1, "07": 0.1, "08": 0.1}}
MIN_TRAIN_MINUTES = {"gpu": 0.25, "dry-run": 0.01}
#: The dry run's budget for 06: its run is far longer than the budget, so the budget ends it and the
#: extrapolation is exercised; 07 and 08 finish their few steps.
DRY_RUN_MINUTES = {"06": 0.15, "07": 1.0, "08": 1.0}
DRY_RUN_STEPS = {"06": 100_000, "07": 8, "08": 8}
DRY_RUN_BATCH = 8

#: The limits the notebooks check in the modes this script runs. None was measured on a GPU: the notebooks call
#: them the course's targets, "never run (TODO: calibrate on a GPU)". tests/test_gpu_check.py checks that these
#: are still the notebooks' values.
THRESHOLDS = {
    "06": [
        {"figure": "loss", "kind": "max", "limit": 0.06,
         "source": "notebooks/06_unet_mnist.ipynb, LOSS_MAX['gpu'] (mean loss of the last 5% of the steps)"},
        {"figure": "bits_per_dim", "kind": "max", "limit": 1.6,
         "source": "notebooks/06_unet_mnist.ipynb, BPD_MEASURED_PER_MODE['gpu'] (500 test images, all T terms)"},
        {"figure": "confident_fraction", "kind": "min", "limit": 0.9,
         "source": "notebooks/06_unet_mnist.ipynb, QUALITY_PER_MODE['gpu'][0] (1000 samples, Algorithm 2)"},
        {"figure": "fd_over_noise_fd", "kind": "max", "limit": 0.1,
         "source": "notebooks/06_unet_mnist.ipynb, QUALITY_PER_MODE['gpu'][1] (FD as a fraction of noise's FD)"},
    ],
    "07": [
        {"figure": "bits_per_dim", "kind": "max", "limit": 4.5,
         "source": "notebooks/07_cifar10.ipynb, check_bound's full-mode limit (set for the notebook's full mode, "
         "cifar10_small for 150k steps; the paper reports <= 3.75 for its model)"},
    ],
    "08": [],
}  # fmt: skip

TITLES = {
    "06": "06 GPU full mode: mnist_small, the GPU recipe (30k steps at batch 128)",
    "07": "07 the paper's CIFAR-10 recipe (ddpm_cifar10, 800k steps at batch 128), for a time budget",
    "08": "08 class-conditional MNIST: 06's GPU recipe with labels (08's own recipe does not exist yet)",
}
NOTEBOOKS = {"06": "06_unet_mnist", "07": "07_cifar10", "08": "08_*"}


def log(msg: str) -> None:
    print(f"[gpu_check {time.monotonic() - T_START:6.1f} s] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------
# Pure helpers (tested in tests/test_gpu_check.py)
# ------------------------------------------------------------------------------------------------
def steady_rate(marks: list[tuple[int, float]], skip_fraction: float = 0.1) -> dict:
    """Steps per second from ``marks`` = [(step, wall seconds)], leaving out the first ``skip_fraction`` of the
    steps (start-up: memory allocation, kernel selection). Falls back to all marks when too few are left."""
    if len(marks) < 2:
        return {"steps_per_sec": float("nan"), "from_step": None, "to_step": None}
    last_step = marks[-1][0]
    kept = [m for m in marks if m[0] >= skip_fraction * last_step]
    if len(kept) < 2 or kept[-1][1] <= kept[0][1]:
        kept = marks
    (s0, t0), (s1, t1) = kept[0], kept[-1]
    rate = (s1 - s0) / (t1 - t0) if t1 > t0 else float("nan")
    return {"steps_per_sec": rate, "from_step": s0, "to_step": s1}


def full_run(steps_done: int, steps_full: int, steps_per_sec: float, train_seconds: float) -> dict:
    """The full run's training time: measured when the budget reached ``steps_full``, else extrapolated from the
    steady rate (and labelled so)."""
    if steps_done >= steps_full:
        return {"minutes": train_seconds / 60, "extrapolated": False, "label": "measured: all steps done (wall clock)"}
    if not (steps_per_sec > 0 and math.isfinite(steps_per_sec)):
        return {"minutes": None, "extrapolated": True, "label": "EXTRAPOLATION impossible: no steady rate measured"}
    return {
        "minutes": steps_full / steps_per_sec / 60,
        "extrapolated": True,
        "label": f"EXTRAPOLATED from {steps_done} of {steps_full} steps at the steady {steps_per_sec:.2f} steps/s "
        "(training only; sampling, checkpoints and evaluation not included)",
    }


def plan_budget(requested: float, seconds_left: float, later_checks_minutes: float, margin: float, minimum: float):
    """Training minutes for a check: ``requested``, cut so that this check's evaluation ``margin`` and the later
    checks' ``later_checks_minutes`` still fit in ``seconds_left``; None (skip) when less than ``minimum`` is
    left."""
    available = seconds_left / 60 - later_checks_minutes - margin
    budget = min(requested, available)
    return budget if budget >= minimum else None


def threshold_status(th: dict, value, mode: str, reached_full: bool, steps: int, device: str) -> dict:
    """``th`` with the figure's value and its status: unmeasured unless a GPU run did all the steps."""
    out = dict(th, value=value)
    if value is None or not math.isfinite(value):
        out["status"] = "unmeasured: the figure is missing"
        return out
    ok = value <= th["limit"] if th["kind"] == "max" else value >= th["limit"]
    out["within_limit"] = bool(ok)
    if mode != "gpu":
        out["status"] = "unmeasured: dry run on the CPU (no GPU); the figure says nothing about the GPU mode"
    elif not reached_full:
        out["status"] = (
            f"unmeasured for the full run: after the budget's {steps} steps the figure is {value:.4g}, "
            f"{'within' if ok else 'outside'} the full run's limit {th['limit']}"
        )
    else:
        out["status"] = f"measured on {device}: {value:.4g} {'passes' if ok else 'FAILS'} the limit {th['limit']}"
    return out


def loss_summary(losses: torch.Tensor) -> dict:
    """The loss after the steps done: the mean of the last 5% of the steps (at least 1), and a 10-point curve."""
    n = int(losses.numel())
    if n == 0:
        return {"after_steps": 0, "mean_last": None, "window": 0, "curve": []}
    window = max(1, n // 20)
    edges = sorted({max(1, round(n * k / 10)) for k in range(1, 11)})
    curve, prev = [], 0
    for e in edges:
        curve.append([e, float(losses[prev:e].mean())])
        prev = e
    return {"after_steps": n, "mean_last": float(losses[-window:].mean()), "window": window, "curve": curve}


def format_table(report: dict) -> str:
    """A short Markdown table of the report."""
    head = f"GPU check ({report['mode']}, {report['device']}, {report['wall_seconds'] / 60:.1f} min in all)"
    rows = [
        "| check | budget (min) | steps done / full | img/s | loss | full run (min) | figures | limits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in report["checks"]:
        if c["status"] != "ran":
            rows.append(f"| {c['id']} | - | - | - | - | - | {c['status']}: {c.get('reason', '')} | - |")
            continue
        fr = c["full_run"]
        full = "?" if fr["minutes"] is None else f"{fr['minutes']:.1f}"
        full += " EXTRAPOLATED" if fr["extrapolated"] else ""
        figs = []
        q = c.get("quality")
        if q:
            figs.append(f"confident {q['confident_fraction']:.3f}, FD {q['fd']:.1f} (noise {q['fd_noise']:.0f})")
            if q.get("label_accuracy") is not None:
                figs.append(f"label accuracy {q['label_accuracy']:.3f}")
        if c["dataset_note"].startswith("only"):
            figs.append(c["dataset_note"].split(" (")[0])
        b = c.get("bits_per_dim")
        if b:
            figs.append(f"{b['bpd']:.3f} +- {b['stderr']:.3f} bits/dim")
        limits = "; ".join(
            f"{t['figure']} {'<=' if t['kind'] == 'max' else '>='} {t['limit']}: {t['status'].split(':')[0]}"
            for t in c["thresholds"]
        )
        loss = c["loss"]["mean_last"]
        rows.append(
            f"| {c['id']} | {c['budget_minutes']:.2f} | {c['steps_done']} / {c['steps_full']} "
            f"| {c['images_per_sec']:.0f} | {'-' if loss is None else f'{loss:.4f}'} | {full} | {'; '.join(figs)} "
            f"| {limits or 'none yet'} |"
        )
    return "\n".join([head, "", *rows])


# ------------------------------------------------------------------------------------------------
# Running a check
# ------------------------------------------------------------------------------------------------
class WallClock:
    """The training callback: records (step, wall seconds since the call of train) after every step -- the trainer
    moves each step's loss to the CPU when a callback is set, so the GPU has finished the step by then -- and stops
    the run once ``budget_seconds`` of wall time have passed (the trainer's own ``minutes`` budget counts only its
    step time)."""

    def __init__(self, budget_seconds: float):
        self.budget_seconds = budget_seconds
        self.start = time.perf_counter()
        self.marks: list[tuple[int, float]] = []

    def __call__(self, state) -> bool:
        elapsed = time.perf_counter() - self.start
        self.marks.append((int(state.step), elapsed))
        return elapsed >= self.budget_seconds


def class_conditional_available() -> bool:
    return "num_classes" in {f.name for f in dataclasses.fields(TrainConfig)} and hasattr(
        TrainConfig, "class_conditional"
    )


def make_config(check: str, mode: str, device: torch.device, budget: float) -> TrainConfig:
    dataset = "cifar10" if check == "07" else "mnist"
    common = {"out": None, "seed": 0, "minutes": budget, "ckpt_every": 0, "sample_every": 0}
    if mode == "gpu":
        config = TrainConfig.recommended(dataset, fast=False, device=device, **common)
    else:
        config = TrainConfig.recommended(
            dataset, fast=True, device=device, steps=DRY_RUN_STEPS[check], batch_size=DRY_RUN_BATCH, **common
        )
    return config.class_conditional() if check == "08" else config


def evaluation_settings(check: str, mode: str) -> dict:
    """How ``check`` is scored: the notebook's GPU-mode sizes (06), smaller ones for the paper's model (07), and
    tiny ones with the same keys in the dry run."""
    gpu = {
        "06": {"n_samples": 1000, "ddim_steps": None, "classifier_steps": 800, "n_reference": 10_000,
               "bpd_images": 500, "bpd_timesteps": None},  # notebook 06's GPU mode
        "07": {"n_samples": 64, "ddim_steps": 50, "bpd_images": 250, "bpd_timesteps": 100},
        "08": {"n_samples": 1000, "ddim_steps": 50, "classifier_steps": 800, "n_reference": 10_000},
    }[check]  # fmt: skip
    if mode == "gpu":
        return gpu
    tiny = {"n_samples": 32, "ddim_steps": 10, "classifier_steps": 20, "n_reference": 500, "bpd_images": 8,
            "bpd_timesteps": 4}  # fmt: skip
    return {k: tiny[k] for k in gpu}


def dataset_note(dataset: str, n: int) -> str:
    full = {"mnist": 60_000, "cifar10": 50_000}[dataset]
    if n == full:
        return f"the full {dataset} training set"
    return (
        f"only {n:,} of {dataset}'s {full:,} training images (e.g. the course's CIFAR-10 subset): not the recipe's data"
    )


def sampler_name(ddim_steps: int | None) -> str:
    return "Algorithm 2 (all T steps)" if ddim_steps is None else f"DDIM, {ddim_steps} steps"


def score_mnist(samples, labels, device, settings, work: Path, mode: str) -> dict:
    classifier, info = load_or_train_classifier(
        cache_dir=work / "classifier" if mode == "dry-run" else None, steps=settings["classifier_steps"], device=device
    )
    q = mnist_sample_quality(samples, classifier, n_reference=settings["n_reference"], seed=0)
    s, noise, real = q["samples"], q["noise"], q["real_test"]
    out = {
        "n": q["n"],
        "sampler": sampler_name(settings["ddim_steps"]),
        "confident_fraction": s["confident_fraction"],
        "fd": s["fd"],
        "fd_noise": noise["fd"],
        "fd_over_noise_fd": s["fd"] / noise["fd"],
        "class_counts": s["class_counts"],
        "real_test": {"confident_fraction": real["confident_fraction"], "fd": real["fd"]},
        "classifier_test_accuracy": info["test_accuracy"],
        "label_accuracy": None,
    }
    if labels is not None:
        probs, _ = classifier_outputs(classifier, samples)
        out["label_accuracy"] = float((probs.argmax(1) == labels.cpu()).double().mean())
    return out


def bits_per_dim(ema, schedule, test_images, device, settings) -> dict:
    x = test_images[: settings["bpd_images"]]
    K = settings["bpd_timesteps"]
    kw = {"num_timesteps": K, "seed": 0, "var_type": "fixedlarge", "device": device, "batch_size": 250}
    r = nll_bits_per_dim(ema, schedule, x, **kw)
    r0 = nll_bits_per_dim(zero_eps_model, schedule, x, **kw)
    return {
        "bpd": r["bpd"],
        "stderr": r["stderr"],
        "n_images": r["n_images"],
        "method": r["method"],
        "eps_zero_model_bpd": r0["bpd"],
    }


def run_check(check, mode, device, budget: float, settings: dict, work: Path, out_dir: Path, stem: str) -> dict:
    """Train ``check``'s model for ``budget`` minutes, evaluate it with ``settings``, return its record."""
    config = make_config(check, mode, device, budget)
    train_ds = load_dataset(config.dataset, train=True)
    test_ds = load_dataset(config.dataset, train=False)
    log(f"{check}: training {config.preset} on {len(train_ds):,} {config.dataset} images for at most {budget:.2f} min")
    clock = WallClock(60 * budget)
    result = train(config, callback=clock, progress=sys.stderr.isatty(), dataset=train_ds)
    train_seconds = time.perf_counter() - clock.start
    rate = steady_rate(clock.marks)
    record = {
        "id": check,
        "status": "ran",
        "title": TITLES[check] if mode == "gpu" else f"{check} dry run: {config.preset}, {config.steps} steps (CPU)",
        "recipe": {
            k: getattr(config, k)
            for k in ("dataset", "preset", "steps", "batch_size", "lr", "warmup", "ema_decay", "bf16", "num_classes")
            if hasattr(config, k)
        },
        "train_images": len(train_ds),
        "dataset_note": dataset_note(config.dataset, len(train_ds)),
        "budget_minutes": budget,
        "steps_done": result.step,
        "steps_full": config.steps,
        "reached_full_steps": result.step >= config.steps,
        "stop_reason": "wall-clock budget" if result.stop_reason == "callback" else result.stop_reason,
        "train_wall_seconds": train_seconds,
        "steady_steps_per_sec": rate["steps_per_sec"],
        "images_per_sec": rate["steps_per_sec"] * config.batch_size,
        "images_per_sec_how": f"wall clock, steps {rate['from_step']}..{rate['to_step']} (the first 10% left out), "
        "with the loss read back after every step",
        "loss": loss_summary(result.losses),
        "full_run": full_run(result.step, config.steps, rate["steps_per_sec"], train_seconds),
    }
    log(f"{check}: {result.step}/{config.steps} steps in {train_seconds:.0f} s, {record['images_per_sec']:.0f} img/s")
    t0 = time.perf_counter()
    seconds = record["eval_seconds_parts"] = {}
    ema = result.ema.eval()
    shape = tuple(train_ds.images.shape[1:])
    labels, model = None, ema
    if check == "08":  # labels 0..9 in turn, all in one batch, so that they line up with the rows
        labels = torch.arange(settings["n_samples"]) % 10
        y = labels.to(device)
        model = lambda x, t: ema(x, t, y=y)  # noqa: E731
    samples = sample_images(
        model,
        result.schedule,
        settings["n_samples"],
        shape,
        ddim_steps=settings["ddim_steps"],
        seed=0,
        device=device,
        batch_size=settings["n_samples"],  # one batch: 1000 small images are far from filling a GPU
    )
    seconds["sampling"] = time.perf_counter() - t0
    grid = out_dir / f"{stem}_{check}_samples.png"
    save_image_grid(samples[:64], grid, nrow=8)
    record["samples_png"] = str(grid)
    if config.dataset == "mnist":
        t1 = time.perf_counter()
        record["quality"] = score_mnist(samples, labels, device, settings, work, mode)
        seconds["classifier_scores"] = time.perf_counter() - t1
    if "bpd_images" in settings:
        t1 = time.perf_counter()
        record["bits_per_dim"] = bits_per_dim(ema, result.schedule, test_ds.images, device, settings)
        seconds["bits_per_dim"] = time.perf_counter() - t1
    record["eval_seconds"] = time.perf_counter() - t0
    figures = {"loss": record["loss"]["mean_last"], **(record.get("quality") or {})}
    if "bits_per_dim" in record:
        figures["bits_per_dim"] = record["bits_per_dim"]["bpd"]
    record["thresholds"] = [
        threshold_status(th, figures.get(th["figure"]), mode, record["reached_full_steps"], result.step, str(device))
        for th in THRESHOLDS[check]
    ]
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    log(f"{check}: evaluated in {record['eval_seconds']:.0f} s ({parts})")
    return record


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def choose_checks(spec: str) -> list[str]:
    if spec == "auto":
        have_08 = any((REPO / "notebooks").glob("08_*.ipynb"))
        return ["06", "07"] + (["08"] if have_08 else [])
    checks = [c.strip() for c in spec.split(",") if c.strip()]
    bad = [c for c in checks if c not in CHECKS]
    if bad or not checks:
        raise SystemExit(
            f"--checks: unknown check(s) {bad or spec!r}; use a comma-separated list of {', '.join(CHECKS)}"
        )
    return checks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out",
        type=Path,
        default=REPO / "build" / "gpu_check" / "gpu_check.json",
        help="the JSON report (default build/gpu_check/gpu_check.json); the table goes beside it as .md",
    )
    p.add_argument(
        "--checks",
        default="auto",
        help="comma-separated, of 06, 07, 08 (default auto: 06, 07, and 08 once notebooks/08_*.ipynb exists)",
    )
    for c in CHECKS:
        p.add_argument(
            f"--minutes-{c}",
            type=float,
            default=DEFAULT_MINUTES[c],
            help=f"training minutes (wall clock) for check {c} (default {DEFAULT_MINUTES[c]})",
        )
    p.add_argument(
        "--total-minutes", type=float, default=8.0, help="bound on the whole run from the script's start (default 8)"
    )
    p.add_argument(
        "--bpd-timesteps-07",
        type=int,
        default=100,
        help="terms per image of 07's bits/dim estimate (default 100; 0 = all T: minutes on the paper's model)",
    )
    p.add_argument("--dry-run", action="store_true", help="tiny models on the CPU (automatic without CUDA)")
    p.add_argument("--data-root", help="dataset folder (default $EDUDIFF_DATA)")
    args = p.parse_args(argv)
    if args.data_root:
        import os

        os.environ["EDUDIFF_DATA"] = str(Path(args.data_root).resolve())
    checks = choose_checks(args.checks)
    if "08" in checks and not class_conditional_available():
        raise SystemExit(
            "check 08 needs a class-conditional TrainConfig (num_classes, class_conditional()); "
            "this edudiff has none: leave 08 out of --checks"
        )
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    found = default_device()
    if args.dry_run:
        mode, device = "dry-run", torch.device("cpu")
        reason = "--dry-run"
    elif found.type != "cuda":
        mode, device = "dry-run", torch.device("cpu")
        reason = f"no CUDA device (torch {torch.__version__} sees {found.type} only)"
        log(
            f"{reason}: running the DRY RUN instead (tiny models on the CPU; its figures say nothing about the "
            "GPU modes). For the real check, run this on a machine with an NVIDIA GPU and a CUDA build of torch."
        )
    else:
        mode, device, reason = "gpu", found, None
        torch.ones(1, device=device).sum().item()  # CUDA's start-up, inside the budget
    if mode == "dry-run":
        torch.set_num_threads(1)  # tiny tensors: one thread is faster, and spares a busy machine
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    log(f"mode {mode} on {device} ({device_name}); checks {', '.join(checks)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stem = args.out.stem
    deadline = T_START + 60 * args.total_minutes
    records = []
    with tempfile.TemporaryDirectory(prefix="edudiff-gpu-check-") as tmp:
        for i, check in enumerate(checks):
            requested = getattr(args, f"minutes_{check}") if mode == "gpu" else DRY_RUN_MINUTES[check]
            later = sum(MIN_TRAIN_MINUTES[mode] + EVAL_MARGIN[mode][c] for c in checks[i + 1 :])
            budget = plan_budget(
                requested, deadline - time.monotonic(), later, EVAL_MARGIN[mode][check], MIN_TRAIN_MINUTES[mode]
            )
            if budget is None:
                why = f"the total budget of {args.total_minutes} min is spent"
                log(f"{check}: skipped: {why}")
                records.append({"id": check, "status": "skipped", "reason": why, "thresholds": []})
                continue
            if budget < requested:
                log(f"{check}: budget cut from {requested} to {budget:.2f} min to keep within --total-minutes")
            settings = evaluation_settings(check, mode)
            if check == "07" and mode == "gpu":
                settings["bpd_timesteps"] = args.bpd_timesteps_07 or None
            records.append(run_check(check, mode, device, budget, settings, Path(tmp), args.out.parent, stem))
    report = {
        "script": "benchmarks/gpu_check.py",
        "mode": mode,
        "dry_run_reason": reason,
        "device": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "commit": git_commit(),
        "started": started,
        "total_budget_minutes": args.total_minutes,
        "wall_seconds": time.monotonic() - T_START,
        "checks": records,
    }
    report["over_budget"] = report["wall_seconds"] > 60 * args.total_minutes
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = format_table(report)
    args.out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    print("\n" + table + "\n")
    log(f"report: {args.out} (table: {args.out.with_suffix('.md')})")
    if report["over_budget"]:
        log(f"WARNING: the run took {report['wall_seconds'] / 60:.1f} min, over --total-minutes {args.total_minutes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
