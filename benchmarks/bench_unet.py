"""Training speed of the course's MNIST U-Net vs a parameter-matched diffusers ``UNet2DModel``.

Both models get the same input (batch 64 of 1x28x28 MNIST-sized images, which both support:
28 -> 14 -> 7) and are timed on full training steps -- forward, MSE loss against a noise target,
backward, AdamW step -- on ``--threads`` CPU threads (default 2), after warm-up steps. The timed steps
of all models are *interleaved* (round-robin) so that a busy machine slows every model alike; the
figure is the median over the timed steps. Each model is tried in both memory formats
(contiguous NCHW and ``channels_last``) and the faster is reported.

The diffusers model is chosen by parameter count: among ``UNet2DModel``s with the diffusers-default
block pattern (attention in every level but the first, as in ``UNet2DModel``'s defaults) and
``block_out_channels=(c, 2c, 2c)`` -- the shape of the reference (32, 64, 64) -- with
``layers_per_block`` in {1, 2}, the one closest in parameters to ours (it must be within 15%).
A second diffusers baseline ("diffusers-attn7") puts attention only at the lowest resolution, like
ours, so that the remaining gap is the width/depth layout alone (``--no-attn7`` skips it). Both
diffusers models keep their default dropout 0 (ours trains with 0.1, which costs it a little).

The figures are only meaningful on an otherwise idle machine: with more runnable processes than
cores, two OpenMP threads per op can run several times slower; the load average is printed.

Run:  python benchmarks/bench_unet.py [--batch 64] [--steps 7] [--threads 2] [--size 28]
(needs ``pip install diffusers`` for the comparison; without it only our model is timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

from edudiff.nn import UNet, count_parameters, mnist_small


def diffusers_unet(c: int, layers_per_block: int, attn_levels: tuple[int, ...], image_size: int):
    """A 3-level diffusers UNet2DModel with block_out_channels (c, 2c, 2c), 1 channel in and out."""
    from diffusers import UNet2DModel

    down = tuple("AttnDownBlock2D" if i in attn_levels else "DownBlock2D" for i in range(3))
    up = tuple("AttnUpBlock2D" if i in attn_levels else "UpBlock2D" for i in reversed(range(3)))
    return UNet2DModel(
        sample_size=image_size,
        in_channels=1,
        out_channels=1,
        block_out_channels=(c, 2 * c, 2 * c),
        layers_per_block=layers_per_block,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=8,
    )


def matched_diffusers(target: int, attn_levels: tuple[int, ...], image_size: int) -> tuple[int, int, int]:
    """``(params, c, layers_per_block)`` of the candidate whose parameter count is closest to ``target``."""
    best = None
    for layers in (1, 2):
        for c in range(16, 97, 8):
            n = count_parameters(diffusers_unet(c, layers, attn_levels, image_size))
            if best is None or abs(n - target) < abs(best[0] - target):
                best = (n, c, layers)
    return best


class Runner:
    """One model in one memory format, with its optimizer and fixed batch; ``step()`` trains once."""

    def __init__(self, name, model, channels_last, batch, image_size, seed=0):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.name = f"{name} [{'channels_last' if channels_last else 'NCHW'}]"
        self.model = model.to(memory_format=fmt).train()
        self.is_diffusers = not isinstance(model, UNet)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(batch, 1, image_size, image_size, generator=g).contiguous(memory_format=fmt)
        self.t = torch.randint(1, 1001, (batch,), generator=g)
        self.eps = torch.randn(self.x.shape, generator=g).contiguous(memory_format=fmt)
        self.times: list[float] = []

    def step(self, record: bool) -> None:
        start = time.perf_counter()
        out = self.model(self.x, self.t)
        if self.is_diffusers:
            out = out.sample
        loss = F.mse_loss(out, self.eps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if record:
            self.times.append(time.perf_counter() - start)

    def images_per_s(self) -> float:
        return self.x.shape[0] / statistics.median(self.times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=28, help="image size (28: MNIST as is; 32: padded)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=7, help="timed steps per model (median reported)")
    p.add_argument(
        "--no-attn7",
        action="store_true",
        help="skip the diffusers baseline with attention only at the lowest resolution",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")

    cfg = mnist_small(image_size=args.size, attention_resolutions=(args.size // 4,))  # lowest level
    ours = UNet(cfg)
    n_ours = count_parameters(ours)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"input 1x{args.size}x{args.size}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"load average (1 min) {load:.2f} on {os.cpu_count()} cores"
        + ("  -- WARNING: the machine is busy, timings are unreliable" if load > 1.5 else "")
    )
    print(
        f"ours      : edudiff mnist_small  {n_ours:>10,} params  channels {cfg.level_channels()}, "
        f"res blocks {cfg.res_blocks_per_level()}, attention at {cfg.attention_resolutions} + middle"
    )

    models = [("ours", lambda: UNet(cfg))]
    try:
        import diffusers
    except ImportError:
        print("diffusers is not installed: timing our model only (pip install diffusers for the comparison).")
    else:
        r1, r2 = args.size // 2, args.size // 4
        baselines = [("diffusers", (1, 2), f"attention at {r1}x{r1} and {r2}x{r2} (UNet2DModel default pattern)")]
        if not args.no_attn7:
            baselines.append(("diffusers-attn7", (2,), f"attention at {r2}x{r2} only, like ours"))
        for name, attn_levels, note in baselines:
            n, c, layers = matched_diffusers(n_ours, attn_levels, args.size)
            print(
                f"{name:<10}: diffusers {diffusers.__version__} UNet2DModel {n:>10,} params  "
                f"block_out_channels ({c}, {2 * c}, {2 * c}), layers_per_block {layers}, {note}; "
                f"{100 * (n / n_ours - 1):+.1f}% vs ours"
            )
            if abs(n / n_ours - 1) > 0.15:
                raise SystemExit(f"no diffusers model within 15% of {n_ours:,} parameters")
            models.append((name, lambda c=c, k=layers, a=attn_levels: diffusers_unet(c, k, a, args.size)))

    runners = []
    for name, build in models:
        for channels_last in (False, True):
            torch.manual_seed(0)
            runners.append(Runner(name, build(), channels_last, args.batch, args.size))
    for r in runners:
        for _ in range(args.warmup):
            r.step(record=False)
    for _ in range(args.steps):  # round-robin: machine load hits every model alike
        for r in runners:
            r.step(record=True)

    print(f"\n{'model':<34} {'img/s':>8}   (median of {args.steps} timed steps after {args.warmup} warm-up)")
    best: dict[str, Runner] = {}
    for r in runners:
        print(f"{r.name:<34} {r.images_per_s():8.1f}")
        base = r.name.split(" [")[0]
        if base not in best or r.images_per_s() > best[base].images_per_s():
            best[base] = r
    ours_best = best["ours"]
    print(f"\nours (best format): {ours_best.images_per_s():.1f} img/s  {ours_best.name}")
    for name, r in best.items():
        if name == "ours":
            continue
        ratio = ours_best.images_per_s() / r.images_per_s()
        if name == "diffusers":
            verdict = f"{'meets' if ratio >= 2 else 'MISSES'} the 2x target"
        else:
            verdict = "for reference: the part of the gain that is not attention placement"
        print(
            f"{name} (best format): {r.images_per_s():.1f} img/s  {r.name}\n"
            f"    -> ratio ours/{name} = {ratio:.2f}x  ({verdict})"
        )
    if hasattr(os, "getloadavg"):
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
