"""The quality half of the CPU recipe's ablation (``benchmarks/README.md``): train one variant of the MNIST
CPU recipe, keep the EMA weights every ``--snap-images`` training images, and score each snapshot with the
project's classifier (confident fraction at p > 0.9 and Fréchet distance, DDIM samples).

Variants are compared at equal numbers of training *images*, so two of them can run side by side on one
thread each without distorting the comparison; ``bench_cpu_levers.py`` converts images into minutes on
this CPU. Every option defaults to the recipe (``TrainConfig.recommended("mnist", device="cpu")``):

    python benchmarks/ablate_cpu_recipe.py --name minsnr --max-images 50000            # the recipe itself
    python benchmarks/ablate_cpu_recipe.py --name plain --min-snr-gamma 0 --max-images 50000   # L_simple
    python benchmarks/ablate_cpu_recipe.py --name wide --preset mnist_small --unet '{"dropout": 0}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edudiff.images import sample_images
from edudiff.images.evaluate import load_or_train_classifier, mnist_sample_quality
from edudiff.training import TrainConfig, build_model, train


def main(argv=None) -> int:
    recipe = TrainConfig.recommended("mnist", fast=False, device="cpu")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="run folder under --root")
    p.add_argument("--root", default="runs/ablation")
    p.add_argument("--preset", default=recipe.preset)
    p.add_argument("--unet", type=json.loads, default=recipe.unet, help="UNetConfig overrides as JSON")
    p.add_argument("--batch-size", type=int, default=recipe.batch_size)
    p.add_argument("--lr", type=float, default=recipe.lr)
    p.add_argument("--warmup", type=int, default=recipe.warmup)
    p.add_argument("--ema-decay", type=float, default=recipe.ema_decay)
    p.add_argument("--min-snr-gamma", type=float, default=recipe.min_snr_gamma, help="0 = L_simple")
    p.add_argument("--max-images", type=int, default=50_000)
    p.add_argument("--snap-images", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-samples", type=int, default=200)
    p.add_argument("--ddim-steps", type=int, default=25)
    p.add_argument("--cache-dir", help="where the classifier is cached (default <data root>/edudiff_cache)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.root) / args.name
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig.recommended(
        "mnist", fast=False, preset=args.preset, unet=args.unet, steps=10**9, batch_size=args.batch_size,
        lr=args.lr, warmup=args.warmup, ema_decay=args.ema_decay, min_snr_gamma=args.min_snr_gamma or None,
        device="cpu", out=None, ckpt_every=0, sample_every=0, log_every=50, seed=0,
    )  # fmt: skip
    snaps, next_snap = [], [args.snap_images]

    def callback(st) -> bool:
        images = st.step * args.batch_size
        if images < next_snap[0]:
            return False
        path = out / f"ema_{images:08d}images.pt"
        torch.save({"ema": st.ema.state_dict(), "images": images, "train_seconds": st.train_seconds}, path)
        snaps.append(path)
        print(f"{images} images, {st.train_seconds / 60:.1f} training minutes -> {path}", flush=True)
        next_snap[0] += args.snap_images
        return images >= args.max_images

    t0 = time.perf_counter()
    train(config, callback=callback, progress=False)
    schedule = config.make_schedule()
    clf, _ = load_or_train_classifier(cache_dir=args.cache_dir, steps=800, device="cpu")
    print(f"\n# {args.name}: {json.dumps({k: v for k, v in vars(args).items() if k not in ('root', 'cache_dir')})}")
    print(f"{'images':>8}  {'minutes':>7}  confident (N={args.n_samples}, DDIM {args.ddim_steps})      FD")
    for path in snaps:
        snap = torch.load(path, weights_only=True)
        model = build_model(config)
        model.load_state_dict(snap["ema"])
        x = sample_images(model.eval(), schedule, args.n_samples, (1, 28, 28),
                          ddim_steps=args.ddim_steps, seed=0, device="cpu")  # fmt: skip
        q = mnist_sample_quality(x, clf, n_reference=5000, seed=0)["samples"]
        minutes = snap["train_seconds"] / 60
        print(f"{snap['images']:8d}  {minutes:7.1f}  {q['confident_fraction']:9.3f}  {q['fd']:26.1f}")
    print(f"(wall {(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
