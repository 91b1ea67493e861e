"""The command line: ``python -m edudiff {train,train-classifier,sample,evaluate,homework} ...``.

One entry point for every command (``python -m edudiff.pretrained`` is the shipped weights' own tool).

Taught in: README.md ("Training image models").
"""

from __future__ import annotations

import argparse
import os
import sys

from .data import DATASET_NAMES
from .nn.unet_config import PRESETS
from .training.config import TrainConfig
from .training.parts import TrainingInterrupted

__all__ = ["main", "main_train", "train_parser"]

_USAGE = """usage: python -m edudiff {train,train-classifier,sample,evaluate,homework} [options]

  train             train a DDPM U-Net (python -m edudiff train --help)
  train-classifier  train the noise-aware classifier p(y | x_t, t) of classifier guidance
  sample            draw a PNG grid of images from a checkpoint
  evaluate          bits/dim and (MNIST) classifier scores of a checkpoint
  homework          student versions and grading of the notebooks' exercises
"""

_EPILOG = """examples:
  python -m edudiff train --dataset mnist --fast --out runs/mnist_fast        # CPU, a few minutes
  python -m edudiff train --dataset mnist --preset mnist_small --steps 30000 --out runs/mnist
  python -m edudiff train --dataset mnist --out runs/mnist --resume           # continue after a crash
  python -m edudiff train --dataset mnist --out runs/mnist --minutes 20       # stop after 20 min of training
  python -m edudiff train --dataset mnist --preset mnist_cpu --init-from mnist --out runs/more  # shipped weights on
  python -m edudiff train --dataset mnist --class-conditional --out runs/mnist_cond   # p(x|y), guidance
  python -m edudiff train --dataset cifar10 --download --out runs/cifar10     # the paper's recipe
  torchrun --nproc_per_node 4 -m edudiff train --dataset cifar10 --out runs/c10   # 4 GPUs (DDP)
  python -m edudiff sample --ckpt runs/mnist/last.pt --n 64 --ddim-steps 50 --out grid.png

Ctrl-C (or --minutes) stops after the current step and saves <out>/last.pt; --resume continues exactly from
there (with a new --minutes budget).
"""

# (flag, type, help) of the options that map one-to-one onto TrainConfig fields; None = take the recipe's.
_OPTIONS = [
    ("--steps", int, "total optimizer steps"),
    ("--batch-size", int, "images per step per process"),
    ("--lr", float, "peak learning rate (AdamW)"),
    ("--warmup", int, "linear learning-rate warm-up steps"),
    ("--lr-decay", str, "after the warm-up: constant (the paper) or cosine (down to 0 at --steps)"),
    ("--weight-decay", float, "AdamW weight decay (default 0, i.e. Adam)"),
    ("--grad-clip", float, "max gradient norm, 0 = off (default 1)"),
    ("--ema-decay", float, "decay of the weights' moving average"),
    (
        "--min-snr-gamma",
        float,
        "Min-SNR: weight t's eps error by min(SNR_t, gamma)/SNR_t; 0 = L_simple (default: the recipe)",
    ),
    ("--label-dropout", float, "with --class-conditional: the chance a label is dropped to null (default 0.1)"),
    ("--T", int, "diffusion steps (default 1000)"),
    ("--noise-schedule", str, "linear (the paper, beta_1..beta_T) or cosine (Nichol & Dhariwal 2021)"),
    ("--seed", int, "seed of everything random (default 0)"),
    ("--out", str, "run folder for last.pt, samples/ and log.jsonl (default runs/<dataset>)"),
    ("--minutes", float, "stop cleanly after this many minutes of training (resumable; default: no limit)"),
    ("--ckpt-every", int, "save <out>/last.pt every so many steps (0 = only at the end)"),
    ("--snapshot-every", int, "also keep ckpt_<step>.pt every so many steps (0 = off)"),
    ("--sample-every", int, "save a sample grid every so many steps (0 = off)"),
    ("--log-every", int, "log the mean loss every so many steps"),
    ("--n-samples", int, "images per periodic sample grid"),
    ("--data-root", str, "dataset folder (default $EDUDIFF_DATA or the repository's data/)"),
    ("--limit", int, "use only the first N training images"),
    (
        "--init-from",
        str,
        "start from trained weights (a shipped name such as mnist, an exported .pt or a checkpoint) with a fresh "
        "optimizer; ignored when --resume finds a checkpoint",
    ),
    ("--device", str, "cpu, cuda, cuda:1, mps (default: the best available)"),
]
_SWITCHES = [
    ("--hflip", "random horizontal flips (default: on for cifar10 only)"),
    ("--channels-last", "channels-last memory format (default: on CUDA only)"),
    ("--bf16", "bf16 autocast (default: on CUDA only; --bf16 also on the CPU)"),
]


def train_parser(prog: str = "python -m edudiff train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a DDPM (Ho et al. 2020) U-Net on MNIST, FashionMNIST or CIFAR-10. Options left out "
        "take the recommended values for the dataset (see TrainConfig.recommended); --fast picks "
        "the CPU-sized ones.",
    )
    p.add_argument("--dataset", default="mnist", choices=sorted(DATASET_NAMES), help="training data (default mnist)")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="U-Net size (default: mnist_small / ddpm_cifar10; with --fast mnist_tiny / cifar10_tiny)",
    )
    p.add_argument("--fast", action="store_true", help="CPU/CI-sized defaults: tiny model, a few hundred steps")
    for flag, kind, text in _OPTIONS:
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--ddim-steps", type=int, help="DDIM steps for the periodic grids (0 = Algorithm 2)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CKPT",
        help="continue from <out>/last.pt (or from CKPT); starts afresh if there is none",
    )
    p.add_argument(
        "--class-conditional",
        action="store_true",
        help="train eps(x_t, t, y) on the dataset's labels, with label dropout for classifier-free guidance",
    )
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slower start, faster steps)")
    for flag, text in _SWITCHES:
        p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed ``train`` options: the recipe, with the options given replacing its fields."""
    names = [flag[2:].replace("-", "_") for flag, _, _ in _OPTIONS] + [f[2:].replace("-", "_") for f, _ in _SWITCHES]
    overrides = {name: getattr(args, name) for name in ["preset", *names] if getattr(args, name) is not None}
    if args.ddim_steps is not None:
        overrides["ddim_steps"] = args.ddim_steps or None  # 0 on the command line = Algorithm 2
    if overrides.get("min_snr_gamma") == 0:
        overrides["min_snr_gamma"] = None  # 0 on the command line = plain L_simple
    overrides.update(download=args.download, compile=args.compile)
    if overrides.get("init_from") is not None and not os.path.isfile(overrides["init_from"]):
        from . import pretrained

        if overrides["init_from"] in pretrained.MODELS:  # a shipped name: its file, md5-checked
            overrides["init_from"] = str(pretrained.verified_weights(overrides["init_from"])[0])
    config = TrainConfig.recommended(args.dataset, fast=args.fast, **overrides)
    return config.class_conditional() if args.class_conditional else config


def main_train(argv: list[str], prog: str = "python -m edudiff train") -> int:
    """``train`` command; returns the exit code (0 done, 2 bad input, 130 stopped by Ctrl-C)."""
    from .training.loop import train

    args = train_parser(prog).parse_args(argv)
    config = config_from_args(args).validate()
    rank0 = int(os.environ.get("RANK", "0")) == 0
    if rank0:
        print(
            f"edudiff train: {config.preset} on {config.dataset}, {config.steps} steps at batch "
            f"{config.batch_size}, lr {config.lr}, out={config.out}",
            flush=True,
        )
    result = train(config, resume=args.resume, progress=not args.quiet)
    if rank0:
        print(
            f"done: step {result.step}, final loss {float(result.losses[-50:].mean()):.4f}, "
            f"{result.images_per_sec:.1f} images/s on {result.device}"
            + (f", checkpoint {result.checkpoint}" if result.checkpoint else ""),
            flush=True,
        )
    return 0


def _run(command: str, argv: list[str], prog: str) -> int:
    """Run one command, turning the errors whose messages name the argument/file and the fix into exit code 2."""
    try:
        if command == "train":
            return main_train(argv, prog)
        if command == "train-classifier":
            from .training.classifier import main_train_classifier

            return main_train_classifier(argv, prog)
        from .images.generate import main_sample

        return main_sample(argv, prog)
    except TrainingInterrupted as err:
        print(f"\n{prog}: {err}", file=sys.stderr, flush=True)
        return 130
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        # Includes CheckpointError and the dataset errors.
        print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m edudiff``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command, rest = (argv[0], argv[1:]) if argv else (None, [])
    if command in ("train", "train-classifier", "sample"):
        return _run(command, rest, f"python -m edudiff {command}")
    if command == "evaluate":
        from .images.evaluate import main as evaluate_main

        return evaluate_main(rest)
    if command == "homework":
        from .course.homework import main as homework_main

        return homework_main(rest)
    print(_USAGE, file=sys.stdout if command in ("-h", "--help") else sys.stderr)
    return 0 if command in ("-h", "--help") else 2
