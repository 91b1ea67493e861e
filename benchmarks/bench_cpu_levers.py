"""Training images per second of the MNIST U-Net variants on this CPU: the speed half of the CPU recipe's
ablation (``benchmarks/README.md``; the quality half is ``ablate_cpu_recipe.py``).

Each variant is timed on full training steps (forward, MSE, backward, Adam step) at ``--batch`` on
``--threads`` threads after two warm-up steps; the median of ``--steps`` timed steps is reported. Levers:
width (``base_channels``), depth (``num_res_blocks``), attention at 7x7, dropout, bf16 autocast,
channels-last memory format and, with ``--compile``, ``torch.compile``. Meaningful only on an otherwise idle
machine (the load average is printed).

    python benchmarks/bench_cpu_levers.py [--batch 128] [--threads 2] [--steps 5] [--compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from edudiff.nn import UNet, count_parameters, mnist_small

VARIANTS = {  # name: (UNetConfig overrides of mnist_small, mode)
    "mnist_small (dropout 0.1)": ({}, "fp32"),
    "  + bf16 autocast": ({}, "bf16"),
    "  + channels_last": ({}, "channels_last"),
    "  dropout 0": ({"dropout": 0.0}, "fp32"),
    "  no attention at 7x7": ({"attention_resolutions": ()}, "fp32"),
    "  width 16 (= mnist_cpu with dropout)": ({"base_channels": 16}, "fp32"),
    "  width 16, dropout 0 (= mnist_cpu)": ({"base_channels": 16, "dropout": 0.0}, "fp32"),
    "  width 16, 2 blocks per level": ({"base_channels": 16, "num_res_blocks": 2}, "fp32"),
    "  width 32": ({"base_channels": 32}, "fp32"),
    "  width 32, levels 1-2-2": ({"base_channels": 32, "channel_mults": (1, 2, 2)}, "fp32"),
}


def time_variant(overrides: dict, mode: str, batch: int, steps: int) -> tuple[int, float]:
    torch.manual_seed(0)
    model = UNet(mnist_small(**overrides))
    if mode == "compile":
        model = torch.compile(model)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, t = torch.randn(batch, 1, 28, 28), torch.randint(1, 1001, (batch,))
    if mode == "channels_last":
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            loss = (model(x, t).float() - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return count_parameters(model), batch / statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (needs a C++ compiler)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = torch.get_num_threads()
    print(f"# batch {args.batch}, {threads} threads, load average {load:.2f}, torch {torch.__version__}")
    variants = dict(VARIANTS)
    if args.compile:
        variants["  + torch.compile"] = ({}, "compile")
    for name, (overrides, mode) in variants.items():
        n, ips = time_variant(overrides, mode, args.batch, args.steps)
        print(f"{name:42s} {n:10,d} params  {ips:7.1f} training images/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
