"""Steering the shipped unconditional MNIST model (notebook 09): classifier guidance and inpainting, measured.

* **Classifier guidance**: ``--n`` digits (the ten classes in turn) from ``edudiff.pretrained.load("mnist")`` with DDIM
  (``--ddim-steps``, clipped x_0), guided by the shipped noisy classifier ``load_classifier("mnist_classifier")`` at
  every scale in ``--scales``; scored by the project's MNIST classifier (800 steps, trained on clean digits: a different
  network from the guide) -- class match (the requested digit with p > 0.9) and FD ratio (Fréchet distance of its
  features to real training digits over real test digits' own at the same N).
* **Inpainting**: the first ``--n-inpaint`` MNIST test digits with the top (or bottom) half known, completed by
  ``edudiff.inpainting.inpaint`` on the schedule respaced to each of ``--inpaint-steps``, for each RePaint ``U`` in
  ``--resample``, with RePaint's jumps of ``--jump-length`` steps, reconstruction guidance of each weight in
  ``--reconstruction`` and each number of ``--particles`` (SMCDiff's weighed chains); the share whose completion the
  scoring classifier gives the original label (arg-max). Beside them, two references that no model draws: the nearest
  training digit's other half, and what a perfect sampler of the exact conditional p(x_unknown | x_known) would keep,
  E[p(y | x_known)] from a calibrated classifier of half digits (``--ceiling-steps``; :func:`conditional_ceiling`).

    python benchmarks/bench_guidance.py                                    # the figures in benchmarks/README.md
    python benchmarks/bench_guidance.py --n 20 --scales 4 --n-inpaint 9 --inpaint-steps 5 --resample 1 --ceiling-steps 9
    python benchmarks/bench_guidance.py --skip-guidance --inpaint-steps 50 100 --resample 1 5 10
    python benchmarks/bench_guidance.py --skip-guidance --n-inpaint 100 --resample 10 --jump-length 1 5 10
    python benchmarks/bench_guidance.py --skip-guidance --n-inpaint 500 --resample 1 --reconstruction 0 4 8 16
    python benchmarks/bench_guidance.py --skip-guidance --n-inpaint 500 --inpaint-steps 100 --resample 1 \
        --reconstruction 16 --particles 1 4 --batch 100 --ceiling-steps 0

Prints a table per part and writes ``--out`` (JSON). Meant for a 2-core CPU; the thread count is printed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch
import torch.nn.functional as F

from edudiff import pretrained
from edudiff.data import load_mnist
from edudiff.images import sample_images
from edudiff.images.evaluate import load_or_train_classifier, mnist_sample_quality
from edudiff.images.sample_quality import train_classifier
from edudiff.inpainting import inpaint
from edudiff.nn.checkpoint import load_model


def guidance_sweep(args, unet, schedule, guide, scorer) -> list[dict]:
    labels = torch.arange(args.n) % 10
    rows = []
    for s in args.scales:
        t0 = time.perf_counter()
        x = sample_images(unet, schedule, args.n, (1, 28, 28), ddim_steps=args.ddim_steps, seed=args.seed,
                          labels=labels, guidance_scale=float(s), classifier=guide, device="cpu")  # fmt: skip
        seconds = time.perf_counter() - t0
        q = mnist_sample_quality(x, scorer, n_reference=10000, seed=args.seed, labels=labels)
        row = {"scale": float(s), "class_match": q["samples"]["class_match"],
               "fd_ratio": q["samples"]["fd"] / q["real_test"]["fd"], "seconds": seconds}  # fmt: skip
        rows.append(row)
        print(f"  s = {s:>5g}: class match {row['class_match']:.3f}, FD ratio {row['fd_ratio']:.2f} ({seconds:.0f} s)",
              flush=True)  # fmt: skip
    return rows


def conditional_ceiling(known_train, train_labels, known_test, test_labels, steps: int) -> tuple[float, float, float]:
    """What a perfect sampler of p(x_unknown | x_known) would keep: E[p(y | x_known)] over the test digits.

    A completion drawn from the true conditional shows digit y with probability p(y | x_known), so its label is kept
    with probability p(y_true | x_known). That probability is estimated by the scoring network's architecture trained
    on the half digits alone (the first 55,000 training digits) and temperature-scaled on the last 5,000 (Guo et al.
    2017). Returns (E[p(y_true | half)], the arg-max accuracy -- what a completion always showing the most likely
    digit would keep --, the temperature)."""
    fit, val = slice(0, 55000), slice(55000, None)
    with torch.enable_grad():  # inpainting_table runs under no_grad
        clf = train_classifier(known_train[fit], train_labels[fit], steps=steps, batch_size=128, seed=0, device="cpu")
    with torch.no_grad():
        logits_val, logits_test = clf(known_train[val]), clf(known_test)
    temperatures = torch.linspace(0.25, 4.0, 376)  # steps of 0.01
    nll = torch.stack([F.cross_entropy(logits_val / T, train_labels[val]) for T in temperatures])
    T = float(temperatures[nll.argmin()])
    p = (logits_test / T).softmax(1)
    p_true = float(p.gather(1, test_labels[:, None]).mean())
    return p_true, float((p.argmax(1) == test_labels).double().mean()), T


@torch.no_grad()
def inpainting_table(args, unet, schedule, scorer) -> list[dict]:
    test, train = load_mnist(train=False), load_mnist(train=True)
    digits, labels = test.images[: args.n_inpaint], test.labels[: args.n_inpaint]
    top = torch.zeros(1, 1, 28, 28)
    top[..., :14, :] = 1.0

    def label_kept(images: torch.Tensor) -> float:
        return float((scorer(images).argmax(1) == labels).double().mean())

    rows = []
    for half, mask in (("top", top), ("bottom", 1 - top)):
        if half not in args.halves:
            continue
        blank = mask * digits - (1 - mask)  # the known half alone, the rest -1 (black)
        alone = label_kept(blank)
        print(f"  {half} half known, the half alone: label kept {alone:.3f}", flush=True)
        nearest = torch.cdist((mask * digits).flatten(1), (mask * train.images).flatten(1)).argmin(1)
        nn_kept = label_kept(mask * digits + (1 - mask) * train.images[nearest])
        rows.append({"half": half, "method": "nearest training digit", "label_kept": nn_kept})
        print(f"  {half} half known, completed by the nearest training digit: label kept {nn_kept:.3f}", flush=True)
        if args.ceiling_steps > 0:
            t0 = time.perf_counter()
            p_true, map_kept, T = conditional_ceiling(
                mask * train.images - (1 - mask), train.labels, blank, labels, args.ceiling_steps
            )
            rows.append({"half": half, "method": "exact conditional (estimated)", "label_kept": p_true,
                         "most_likely_digit": map_kept, "temperature": T})  # fmt: skip
            print(f"  {half} half known, a perfect sampler of the conditional: label kept {p_true:.3f} (estimated; "
                  f"always the most likely digit: {map_kept:.3f}; T = {T:.2f}; {time.perf_counter() - t0:.0f} s)",
                  flush=True)  # fmt: skip
        settings = itertools.product(args.inpaint_steps, args.resample, args.jump_length, args.reconstruction,
                                     args.particles)  # fmt: skip
        for steps, u, j, w, k in settings:
            if (u == 1 and j > 1) or (k > 1 and u > 1):
                continue  # no resampling, nothing to jump; particles go without RePaint's resampling
            t0 = time.perf_counter()
            g, size = torch.Generator().manual_seed(args.seed + u), args.batch or len(digits)
            out = torch.cat([inpaint(schedule, unet, digits[i : i + size], mask, resample_steps=u, steps=steps,
                                     clip_x0=True, jump_length=j, reconstruction_weight=w, particles=k, generator=g)
                             for i in range(0, len(digits), size)])  # fmt: skip
            kept = label_kept(out.clamp(-1, 1))
            row = {"half": half, "steps": steps, "U": u, "jump_length": j, "reconstruction_weight": w, "particles": k,
                   "label_kept": kept, "alone": alone, "seconds": time.perf_counter() - t0}  # fmt: skip
            rows.append(row)
            print(f"  {half} half known, {steps} steps, U = {u}, j = {j}, w_r = {w:g}, K = {k}: label kept {kept:.3f} "
                  f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=500, help="guided samples per scale (default 500)")
    p.add_argument("--ddim-steps", type=int, default=25)
    p.add_argument("--scales", type=float, nargs="+", default=[0, 2, 4, 6, 8, 12])
    p.add_argument("--n-inpaint", type=int, default=200, help="test digits to complete (default 200)")
    p.add_argument("--inpaint-steps", type=int, nargs="+", default=[50])
    p.add_argument("--resample", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--jump-length", type=int, nargs="+", default=[1], help="RePaint's j (default 1)")
    p.add_argument("--reconstruction", type=float, nargs="+", default=[0.0],
                   help="reconstruction guidance weights w_r (default 0 = none)")  # fmt: skip
    p.add_argument("--particles", type=int, nargs="+", default=[1],
                   help="chains per digit, weighed and resampled (SMCDiff's K; default 1 = none)")  # fmt: skip
    p.add_argument("--batch", type=int, default=0,
                   help="digits per inpaint call (default 0: all at once)")  # fmt: skip
    p.add_argument("--halves", nargs="+", choices=["top", "bottom"], default=["top", "bottom"],
                   help="which half is known (default both)")  # fmt: skip
    p.add_argument("--ceiling-steps", type=int, default=4000,
                   help="steps of the half-digit classifier behind the perfect-sampler figure (0: skip)")  # fmt: skip
    p.add_argument("--ckpt", help="a training checkpoint to steer instead of the shipped mnist")
    p.add_argument("--skip-guidance", action="store_true")
    p.add_argument("--skip-inpainting", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="bench_guidance.json")
    args = p.parse_args(argv)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    if args.ckpt:
        unet, schedule, _ = load_model(args.ckpt, device="cpu")
        print(f"steering {args.ckpt} (EMA weights)", flush=True)
    else:
        unet, schedule, _ = pretrained.load("mnist", device="cpu")
    guide, _, _ = pretrained.load_classifier("mnist_classifier", device="cpu")
    scorer, info = load_or_train_classifier(steps=800, device="cpu")
    print(f"scoring classifier: test accuracy {info['test_accuracy']:.4f}", flush=True)
    result = {"args": vars(args)}
    if not args.skip_guidance:
        print(f"classifier guidance, N = {args.n}, DDIM-{args.ddim_steps}:", flush=True)
        result["guidance"] = guidance_sweep(args, unet, schedule, guide, scorer)
    if not args.skip_inpainting:
        print(f"inpainting, N = {args.n_inpaint} test digits:", flush=True)
        result["inpainting"] = inpainting_table(args, unet, schedule, scorer)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
