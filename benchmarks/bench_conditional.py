"""Time to quality of the class-conditional CPU recipe, and the guidance sweep (notebook 08).

Trains the class-conditional MNIST CPU recipe (``TrainConfig.recommended("mnist", device="cpu").class_conditional()``:
``mnist_cpu`` with a label embedding, label dropout 0.1, batch 64, lr 2e-3, Min-SNR-5, EMA 0.999) with
:func:`edudiff.training.train` in segments of ``--every-minutes`` minutes of *training* time (sampling and scoring are
not counted), and after each segment draws ``--n-samples`` digits (the ten classes in turn) with DDIM from the EMA
weights at every guidance scale in ``--scales``, scoring each set with the project's MNIST classifier:

* **class match**: the share of samples classified as the digit asked for with softmax probability > 0.9;
* **FD ratio**: the Fréchet distance of the classifier's features to real training digits, divided by what real test
  digits score at the same N (1.0 = as close as real data).

    python benchmarks/bench_conditional.py --max-minutes 30 --every-minutes 10          # the recipe's curve
    python benchmarks/bench_conditional.py --max-minutes 0.2 --every-minutes 0.1 --n-samples 20 --scales 1 3  # smoke
    python benchmarks/bench_conditional.py --ckpt runs/cond/last.pt --scales 1 1.5 2 3 5  # sweep one checkpoint
    python benchmarks/bench_conditional.py --ckpt runs/cond/last.pt --scales 2 3 --intervals all 0,400 200,600
                                           # guidance only for LO < t <= HI (Kynkaanniemi et al. 2024)

Meant for a 2-core CPU (``--device cpu``); the thread count is printed. Results: ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from edudiff.images import sample_images
from edudiff.images.evaluate import load_or_train_classifier, mnist_sample_quality
from edudiff.images.generate import parse_interval
from edudiff.nn.checkpoint import load_model
from edudiff.training import TrainConfig, train


def parse_interval_arg(text: str):
    """``all`` -> None (guidance at every step); ``LO,HI`` -> (LO, HI), as ``python -m edudiff sample`` reads it."""
    return None if text == "all" else parse_interval(text)


def sweep(
    model, schedule, classifier, n: int, ddim_steps: int, scales, seed: int, root=None, intervals=(None,)
) -> list[dict]:
    """Class match and FD ratio of ``n`` samples (the ten digits in turn) at each guidance scale and interval."""
    labels = torch.arange(n) % 10
    rows = []
    for s, interval in [(s, i) for i in intervals for s in scales]:
        t0 = time.perf_counter()
        x = sample_images(model, schedule, n, (1, 28, 28), ddim_steps=ddim_steps, seed=seed, labels=labels,
                          guidance_scale=float(s), device="cpu", guidance_interval=interval)  # fmt: skip
        q = mnist_sample_quality(x, classifier, n_reference=10000, seed=seed, root=root, labels=labels)
        rows.append({
            "scale": float(s),
            "interval": None if interval is None else list(interval),
            "class_match": q["samples"]["class_match"],
            "fd": q["samples"]["fd"],
            "fd_real": q["real_test"]["fd"],
            "fd_ratio": q["samples"]["fd"] / q["real_test"]["fd"],
            "real_class_match": q["real_test"]["class_match"],
            "seconds": time.perf_counter() - t0,
        })  # fmt: skip
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    print(title, flush=True)
    print(f"  {'s':>5} {'guided steps':>14} {'class match':>12} {'FD':>8} {'FD / real':>10} {'sampling+scoring s':>19}")
    for r in rows:
        where = "all" if r["interval"] is None else "{} < t <= {}".format(*r["interval"])
        print(
            f"  {r['scale']:>5g} {where:>14} {r['class_match']:>12.3f} {r['fd']:>8.2f} {r['fd_ratio']:>10.2f}"
            f" {r['seconds']:>19.0f}"
        )
    print(f"  real test digits: class match {rows[0]['real_class_match']:.3f}, FD {rows[0]['fd_real']:.2f}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-minutes", type=float, default=30.0, help="training minutes in all (default 30)")
    p.add_argument("--every-minutes", type=float, default=10.0, help="score after every so many (default 10)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0], help="guidance scales s")
    p.add_argument(
        "--intervals",
        type=parse_interval_arg,
        nargs="+",
        default=[None],
        help="guide only the steps LO < t <= HI, e.g. 0,400 ('all' = every step, the default)",
    )
    p.add_argument("--n-samples", type=int, default=500, help="samples per scale (default 500, 50 per digit)")
    p.add_argument("--ddim-steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--out", help="run folder (default: a temporary one)")
    p.add_argument("--ckpt", help="skip training: sweep the scales on this checkpoint")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}", flush=True)
    classifier, info = load_or_train_classifier(steps=800, root=args.data_root, device="cpu")
    print(f"classifier test accuracy {info['test_accuracy']:.4f}", flush=True)
    results = {
        "scales": args.scales,
        "intervals": args.intervals,
        "n_samples": args.n_samples,
        "ddim_steps": args.ddim_steps,
        "curve": [],
    }
    if args.ckpt:
        model, schedule, state = load_model(args.ckpt, device="cpu")
        rows = sweep(
            model,
            schedule,
            classifier,
            args.n_samples,
            args.ddim_steps,
            args.scales,
            args.seed,
            args.data_root,
            args.intervals,
        )
        print_rows(f"{args.ckpt} (step {state.get('step')})", rows)
        results["curve"].append({"step": state.get("step"), "rows": rows})
    else:
        out = args.out or tempfile.mkdtemp(prefix="edudiff-bench-cond-")
        config = TrainConfig.recommended("mnist", device="cpu", out=out, data_root=args.data_root, seed=args.seed,
                                         sample_every=0, steps=10**6).class_conditional()  # fmt: skip
        print(config, flush=True)
        done = 0.0
        while done < args.max_minutes - 1e-9:
            config.minutes = min(args.every_minutes, args.max_minutes - done)
            result = train(config, resume=True, progress=False)
            done += result.train_seconds / 60
            rows = sweep(result.ema, result.schedule, classifier, args.n_samples, args.ddim_steps, args.scales,
                         args.seed, args.data_root, args.intervals)  # fmt: skip
            title = f"after {done:.1f} training minutes (step {result.step}, {result.images_per_sec:.0f} images/s)"
            print_rows(title, rows)
            results["curve"].append({"minutes": done, "step": result.step, "rows": rows})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
