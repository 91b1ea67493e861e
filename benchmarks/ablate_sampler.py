"""The sampler lever of the CPU recipe's ablation (``benchmarks/README.md``): draw digits from one trained
checkpoint with several samplers -- DDIM with a few step counts, and Algorithm 2 (ancestral, all T steps) with
the two fixed variances of sec. 3.2, sigma_t^2 = beta_t and sigma_t^2 = beta-tilde_t -- and score each set with
the project's classifier (confident fraction at p > 0.9, Fréchet distance), next to real test digits and noise.

Every sampler starts from the same seed and clips the predicted x_0 to [-1, 1] at each step, as the course's
samplers do. Algorithm 2 costs T network calls per image (1000 here), so keep ``--n`` small on a CPU:

    python benchmarks/ablate_sampler.py runs/mnist/last.pt --n 200
    python benchmarks/ablate_sampler.py runs/mnist/last.pt --samplers ddim25 ddim100 ancestral_beta_tilde
"""

from __future__ import annotations

import argparse
import time

import torch

from edudiff import ddim_sample, sample
from edudiff.images.evaluate import load_or_train_classifier, mnist_sample_quality
from edudiff.nn.checkpoint import load_model

SAMPLERS = ("ddim25", "ddim50", "ddim100", "ancestral_beta", "ancestral_beta_tilde")


def draw(name: str, model, schedule, n: int, seed: int) -> torch.Tensor:
    """``n`` images (n, 1, 28, 28) from sampler ``name`` (one of :data:`SAMPLERS`), noise seeded by ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 1, 28, 28)
    if name.startswith("ddim"):
        x = ddim_sample(schedule, model, shape, ddim_steps=int(name[4:]), eta=0.0, clip_x0=True, generator=gen)
    elif name.startswith("ancestral_"):
        x = sample(schedule, model, shape, var_type=name[len("ancestral_") :], clip_x0=True, generator=gen)
    else:
        raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return x.float().clamp(-1, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a training checkpoint (its EMA weights are used)")
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    p.add_argument("--n", type=int, default=200, help="samples per sampler (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", help="where the classifier is cached (default <data root>/edudiff_cache)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, schedule, state = load_model(args.checkpoint, ema=True, device="cpu")
    clf, info = load_or_train_classifier(cache_dir=args.cache_dir, device="cpu")
    print(f"{args.checkpoint}: step {state.get('step')}, classifier test accuracy {info['test_accuracy']:.4f}")
    print(f"{'sampler':>22}  {'network calls':>13}  {'confident':>9}  {'FD':>7}  {'seconds':>7}")
    q = None
    for name in args.samplers:
        t0 = time.perf_counter()
        x = draw(name, model, schedule, args.n, args.seed)
        seconds = time.perf_counter() - t0
        q = mnist_sample_quality(x, clf, n_reference=10000, seed=args.seed)
        calls = int(name[4:]) if name.startswith("ddim") else schedule.T
        print(
            f"{name:>22}  {calls:13d}  {q['samples']['confident_fraction']:9.3f}  {q['samples']['fd']:7.1f}"
            f"  {seconds:7.0f}",
            flush=True,
        )
    if q is not None:
        for base in ("real_test", "noise"):
            label, r = f"{base} (N = {args.n})", q[base]
            print(f"{label:>22}  {'':13}  {r['confident_fraction']:9.3f}  {r['fd']:7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
