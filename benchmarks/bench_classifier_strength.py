"""Why the sample-quality classifier is trained for 800 steps and no longer (``benchmarks/README.md``): train the
project's MNIST classifier for several step counts and score, with each, what a good metric must separate --
real test digits and the course's pretrained samples (digits) from an untrained model's samples, 50/50 blends of
two test digits of different classes, and uniform noise (not digits).

A longer-trained classifier is more accurate and rates more real digits as confident, but it also grows
confident on images that are not digits at all: the confident fraction measures the model *and* the classifier.

    python benchmarks/bench_classifier_strength.py                         # 800, 3000 and 8000 steps
    python benchmarks/bench_classifier_strength.py --steps 800 2000 --n 300
"""

from __future__ import annotations

import argparse
import time

import torch

from edudiff import pretrained
from edudiff.data import load_mnist
from edudiff.images.evaluate import load_or_train_classifier, mnist_sample_quality
from edudiff.images.generate import sample_images
from edudiff.nn import UNet


def image_sets(n: int, seed: int) -> dict[str, torch.Tensor]:
    """The images to score (each (n, 1, 28, 28) in [-1, 1]) besides the real-test and noise baselines."""
    model, schedule, _ = pretrained.load("mnist", device="cpu")
    untrained = UNet(model.config).eval()  # eps = 0 everywhere (zero-initialised output)
    test = load_mnist(train=False)
    g = torch.Generator().manual_seed(seed)
    i, j = torch.randperm(len(test.labels), generator=g)[: 4 * n].chunk(2)
    keep = test.labels[i] != test.labels[j]  # two different digits, so the blend is neither
    blends = 0.5 * (test.images[i[keep]] + test.images[j[keep]])
    return {
        "pretrained samples (DDIM-25)": sample_images(model, schedule, n, (1, 28, 28), ddim_steps=25, seed=seed),
        "untrained model's samples": sample_images(untrained, schedule, n, (1, 28, 28), ddim_steps=25, seed=seed),
        "blends of two digits": blends[:n],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[800, 3000, 8000], help="classifier training steps")
    p.add_argument("--n", type=int, default=500, help="images per set (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", help="where the classifiers are cached (default <data root>/edudiff_cache)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    sets = image_sets(args.n, args.seed)
    print(f"image sets drawn in {time.perf_counter() - t0:.0f} s; confident fraction (p > 0.9) / FD, N = {args.n}")
    names = ["real test digits", *sets, "uniform noise"]
    print(f"{'classifier':>20}  {'test acc.':>9}  " + "  ".join(f"{name:>28}" for name in names))
    for steps in args.steps:
        t0 = time.perf_counter()
        clf, info = load_or_train_classifier(cache_dir=args.cache_dir, steps=steps, seed=args.seed, device="cpu")
        cells = {}
        for name, x in sets.items():
            q = mnist_sample_quality(x, clf, n_reference=10000, seed=args.seed)
            cells[name] = q["samples"]
        cells["real test digits"], cells["uniform noise"] = q["real_test"], q["noise"]
        row = "  ".join(f"{cells[k]['confident_fraction']:>19.3f} / {cells[k]['fd']:6.1f}" for k in names)
        label = f"{steps} steps ({time.perf_counter() - t0:.0f} s)"
        print(f"{label:>20}  {info['test_accuracy']:9.4f}  {row}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
