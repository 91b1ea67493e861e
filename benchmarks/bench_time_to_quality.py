"""Time to quality: how many minutes of CPU training until MNIST samples look like digits?

Trains MNIST with the course's CPU recipe (``TrainConfig.recommended("mnist", device="cpu")``, the
default whenever no GPU is present; each setting can be overridden) with :func:`edudiff.training.train`
and, every ``--every-minutes`` minutes of *training* time (sampling and scoring are not counted), draws
``--n-samples`` images with DDIM from the EMA weights and measures
the fraction that the project's MNIST classifier (:mod:`edudiff.images.evaluate`) labels with softmax
probability > 0.9, plus the Fréchet distance in its feature space. Prints the curve (minutes vs
fraction), the real-data floor and noise ceiling, and the minutes until the fraction first reached
``--target`` (default 0.9).

    python benchmarks/bench_time_to_quality.py --max-minutes 30 --every-minutes 5 --keep-going   # the recipe's curve
    python benchmarks/bench_time_to_quality.py --max-minutes 2 --every-minutes 1 --n-samples 64   # smoke run

Evaluation time (500 samples x 25 DDIM steps: about a minute on 2 cores) is reported separately and not
counted in the curve's minutes. Results and the ablation of the recipe: ``benchmarks/README.md``.

Meant for a 2-core CPU (``--device cpu``, the default here); the thread count is printed. The
classifier is trained once (about a minute) and cached under ``<data root>/edudiff_cache``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

from edudiff.images import sample_images
from edudiff.images.evaluate import format_quality, load_or_train_classifier, mnist_sample_quality
from edudiff.nn import PRESETS, count_parameters
from edudiff.training import TrainConfig, train
from edudiff.training.config import NOISE_SCHEDULES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--max-minutes", type=float, default=240.0, help="training-time budget in minutes (default 240)")
    p.add_argument(
        "--every-minutes", type=float, default=10.0, help="evaluate every so many training minutes (default 10)"
    )
    p.add_argument(
        "--n-samples",
        type=int,
        default=500,
        help="samples per evaluation (default 500: the fraction's standard error is <= 0.022, 0.013 near 0.9)",
    )
    p.add_argument("--ddim-steps", type=int, default=25, help="DDIM steps per sample (default 25)")
    p.add_argument("--target", type=float, default=0.9, help="fraction of confident samples to reach (default 0.9)")
    p.add_argument(
        "--threshold", type=float, default=0.9, help="softmax probability counted as confident (default 0.9)"
    )
    p.add_argument("--keep-going", action="store_true", help="train on to the budget after reaching the target")
    recipe = TrainConfig.recommended("mnist", fast=False, device="cpu")
    p.add_argument("--preset", default=recipe.preset, choices=sorted(k for k in PRESETS if k.startswith("mnist")))
    p.add_argument(
        "--unet",
        type=json.loads,
        default=recipe.unet,
        help=f"UNetConfig overrides as JSON (default {json.dumps(recipe.unet)})",
    )
    p.add_argument(
        "--batch-size", type=int, default=recipe.batch_size, help=f"training batch size (default {recipe.batch_size})"
    )
    p.add_argument("--lr", type=float, default=recipe.lr, help=f"peak learning rate (default {recipe.lr:g})")
    p.add_argument("--warmup", type=int, default=recipe.warmup, help=f"warm-up steps (default {recipe.warmup})")
    p.add_argument("--ema-decay", type=float, default=recipe.ema_decay, help=f"EMA decay (default {recipe.ema_decay})")
    p.add_argument(
        "--noise-schedule", default=recipe.noise_schedule, choices=NOISE_SCHEDULES, help="(default: the recipe's)"
    )
    p.add_argument("--device", default="cpu", help="device (default cpu: this benchmark is about CPUs)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", help="run folder (default: a temporary folder)")
    p.add_argument("--data-root", help="dataset folder (default $EDUDIFF_DATA)")
    p.add_argument("--cache-dir", help="where the classifier is cached (default <data root>/edudiff_cache)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"# time to quality: {args.preset} on MNIST, {args.device}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), torch {torch.__version__}"
    )
    t0 = time.perf_counter()
    clf, info = load_or_train_classifier(cache_dir=args.cache_dir, root=args.data_root, device=args.device)
    print(
        f"classifier: test accuracy {info['test_accuracy']:.4f} ({'cached' if info['cached'] else 'trained'} in "
        f"{time.perf_counter() - t0:.0f} s, {info['path']})"
    )

    out = args.out or tempfile.mkdtemp(prefix="edudiff-ttq-")
    config = TrainConfig.recommended(
        "mnist",
        fast=False,
        preset=args.preset,
        unet=args.unet,
        steps=10**9,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        noise_schedule=args.noise_schedule,
        device=args.device,
        out=out,
        ckpt_every=0,
        sample_every=0,
        log_every=100,
        seed=args.seed,
        data_root=args.data_root,
    )
    budget, every = args.max_minutes * 60.0, args.every_minutes * 60.0
    curve: list[dict] = []
    state = {"next": min(every, budget), "hit": None, "eval_seconds": 0.0}
    n_params = None

    def evaluate(st) -> dict:
        e0 = time.perf_counter()
        x = sample_images(
            st.ema,
            st.schedule,
            args.n_samples,
            (1, 28, 28),
            ddim_steps=args.ddim_steps,
            seed=args.seed,
            device=args.device,
        )
        q = mnist_sample_quality(x, clf, threshold=args.threshold, root=args.data_root, seed=args.seed)
        row = {
            "minutes": st.train_seconds / 60,
            "step": st.step,
            "images": st.step * args.batch_size,
            "fraction": q["samples"]["confident_fraction"],
            "fd": q["samples"]["fd"],
            "quality": q,
            "eval_s": time.perf_counter() - e0,
        }
        state["eval_seconds"] += row["eval_s"]
        return row

    def callback(st) -> bool:
        nonlocal n_params
        if n_params is None:
            n_params = count_parameters(st.model)
        if st.train_seconds < state["next"]:
            return False
        row = evaluate(st)
        curve.append(row)
        print(
            f"{row['minutes']:8.2f} min  step {row['step']:7d}  {row['images'] / (st.train_seconds or 1):7.1f} img/s  "
            f"confident {row['fraction']:.3f}  FD {row['fd']:8.2f}   (eval {row['eval_s']:.0f} s)",
            flush=True,
        )
        if state["hit"] is None and row["fraction"] >= args.target:
            state["hit"] = row
        state["next"] += every
        if st.train_seconds >= budget:
            return True
        state["next"] = min(state["next"], budget)
        return state["hit"] is not None and not args.keep_going

    print(
        f"{'minutes':>12}  {'step':>12}  {'throughput':>11}  fraction of confidently classified samples "
        f"(N={args.n_samples}, p>{args.threshold})"
    )
    result = train(config, callback=callback, progress=False)
    wall = time.perf_counter() - t0

    print()
    print(
        f"model: {args.preset} {json.dumps(args.unet)}, {n_params:,} parameters; "
        f"batch {args.batch_size}, lr {args.lr}, "
        f"EMA {args.ema_decay}; {result.step} steps in {result.train_seconds / 60:.2f} training minutes "
        f"({result.images_per_sec:.1f} images/s); evaluation took {state['eval_seconds'] / 60:.2f} min; "
        f"wall {wall / 60:.2f} min; last checkpoint {result.checkpoint}"
    )
    if curve:
        print(
            format_quality(curve[-1]["quality"]).replace(
                "generated samples", f"samples @ {curve[-1]['minutes']:.1f} min"
            )
        )
        print("\ncurve (training minutes -> fraction confident):")
        for row in curve:
            print(f"  {row['minutes']:7.2f} -> {row['fraction']:.3f}")
    if state["hit"] is not None:
        h = state["hit"]
        print(
            f"\nRESULT: {args.target:.0%} of samples confidently classified after {h['minutes']:.2f} training minutes "
            f"(step {h['step']}, evaluated every {args.every_minutes:g} min, so the crossing lies in the last interval)"
        )
    else:
        best = max((r["fraction"] for r in curve), default=float("nan"))
        print(f"\nRESULT: {args.target:.0%} not reached within {args.max_minutes:g} training minutes (best {best:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
