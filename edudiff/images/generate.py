"""Drawing images from a trained eps-model: batches of samples, the reverse process as a strip of frames,
and the ``sample`` command (``python -m edudiff sample --ckpt runs/mnist/last.pt``).

Taught in: notebooks/06_unet_mnist.ipynb and notebooks/07_cifar10.ipynb.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from .._validate import check_positive_int
from ..config import default_device
from ..data import DATASET_SHAPES, dataset_key
from ..guidance import check_guidance_interval
from ..nn.checkpoint import load_model
from ..sampling import ddim_sample, sample
from ..schedules import Schedule
from ..utils import atomic_write, model_device
from .imageio import save_image_grid

__all__ = ["sample_images", "denoising_strip", "parse_labels", "labels_path", "sample_parser", "main_sample"]


def labels_path(tensor_path) -> Path:
    """Where ``python -m edudiff sample --save-tensor F --labels ...`` writes the labels: ``F``'s name + ``.labels.pt``
    (``samples.pt`` -> ``samples.labels.pt``)."""
    p = Path(tensor_path)
    return p.with_name(p.stem + ".labels.pt")


def _check_ddim_steps(ddim_steps: int | None, T: int) -> int | None:
    if ddim_steps is None:
        return None
    check_positive_int(ddim_steps, "ddim_steps", fix="(use None for Algorithm 2 with all T steps)")
    if ddim_steps > T:
        raise ValueError(f"ddim_steps must lie in 1..T={T} (or None for Algorithm 2), got {ddim_steps}")
    return ddim_steps


@torch.no_grad()
def sample_images(
    model,
    schedule: Schedule,
    n: int,
    image_shape,
    ddim_steps: int | None = 50,
    eta: float = 0.0,
    seed: int = 0,
    device=None,
    batch_size: int = 256,
    progress: bool = False,
    labels=None,
    guidance_scale: float = 1.0,
    classifier=None,
    guidance_interval=None,
) -> torch.Tensor:
    """Draw ``n`` images from an eps-model; returns a float32 CPU tensor (n, C, H, W) in [-1, 1].

    ``labels``: for a class-conditional model, the class of each image, a LongTensor (n,) (or an int for all);
    ``guidance_scale``: classifier-free guidance scale s (:mod:`edudiff.guidance`; 1 = plain conditional).
    ``classifier``: a noisy classifier ``classifier(x_t, t) -> logits`` (:class:`edudiff.nn.NoisyClassifier`) to
    steer an *unconditional* model towards ``labels`` at scale ``guidance_scale`` (classifier guidance).
    ``guidance_interval``: ``(t_lo, t_hi)`` guides only the steps ``t_lo < t <= t_hi`` (:mod:`edudiff.guidance`).

    ``ddim_steps``: DDIM (:func:`edudiff.ddim_sample`) with that many steps and ``eta``; None =
    Algorithm 2 (:func:`edudiff.sample`, all T steps, sigma_t^2 = beta_t). Both clip the predicted x_0
    to [-1, 1] at every step. The noise comes from a generator seeded by ``seed`` (on ``device``), so
    the same seed gives the same images; batches of ``batch_size`` keep the memory bounded.
    """
    check_positive_int(n, "n", fix="(the number of images)")
    ddim_steps = _check_ddim_steps(ddim_steps, schedule.T)
    device = model_device(model, device, fallback=default_device())
    gen = torch.Generator(device=device).manual_seed(int(seed))
    labels = _label_batch(labels, n)
    outs = []
    for start in range(0, n, batch_size):
        shape = (min(batch_size, n - start), *tuple(image_shape))
        guide = {
            "labels": None if labels is None else labels[start : start + shape[0]].to(device),
            "guidance_scale": guidance_scale,
            "classifier": classifier,
            "guidance_interval": guidance_interval,
        }
        if ddim_steps is not None:
            x = ddim_sample(
                schedule,
                model,
                shape,
                ddim_steps=ddim_steps,
                eta=eta,
                clip_x0=True,
                generator=gen,
                device=device,
                progress=progress,
                **guide,
            )
        else:
            x = sample(
                schedule,
                model,
                shape,
                var_type="beta",
                clip_x0=True,
                generator=gen,
                device=device,
                progress=progress,
                **guide,
            )
        outs.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(outs)


def _label_batch(labels, n: int) -> torch.Tensor | None:
    """``labels`` as a LongTensor (n,) on the CPU (an int is repeated), or None."""
    if labels is None:
        return None
    if isinstance(labels, int) and not isinstance(labels, bool):
        return torch.full((n,), labels, dtype=torch.long)
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (n,):
        raise ValueError(f"labels must be n={n} integer class labels (shape ({n},)) or one int; got {labels!r}")
    return labels.long().cpu()


def parse_labels(text: str, n: int, num_classes: int) -> torch.Tensor:
    """The ``--labels`` option: ``"all"`` = the classes in turn (0, 1, ..., K-1, 0, 1, ...: an equal share of the n
    images each), or comma-separated labels repeated in turn to n, e.g. ``"7"`` or ``"0,1,2"``."""
    if text.strip().lower() == "all":
        return torch.arange(n) % num_classes
    try:
        given = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--labels must be 'all' or comma-separated class labels like 0,1,7; got {text!r}") from None
    bad = [v for v in given if not 0 <= v < num_classes]
    if not given or bad:
        raise ValueError(f"--labels must name classes in 0..{num_classes - 1}; got {text!r}")
    return torch.tensor(given, dtype=torch.long).repeat(n // len(given) + 1)[:n]


@torch.no_grad()
def denoising_strip(
    model,
    schedule: Schedule,
    image_shape,
    n: int = 4,
    num_frames: int = 8,
    ddim_steps: int | None = None,
    seed: int = 0,
    device=None,
) -> tuple[torch.Tensor, list[int]]:
    """The reverse process x_T -> x_0 caught at ``num_frames`` moments, for ``n`` images.

    Runs Algorithm 2 (``ddim_steps=None``, all T steps) or DDIM with ``ddim_steps`` steps, with
    x_0 clipping, and keeps x_t at timesteps evenly spread from T down to 0. Returns ``(frames,
    timesteps)``: frames (num_frames, n, C, H, W) float32 on the CPU, clamped to [-1, 1] for display,
    and the timestep of each frame (first T, last 0). Plot with :func:`edudiff.course.plots.plot_denoising_strip`.
    """
    device = model_device(model, device, fallback=default_device())
    check_positive_int(num_frames, "num_frames", minimum=2, fix="(x_T and x_0 at least)")
    ddim_steps = _check_ddim_steps(ddim_steps, schedule.T)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    shape = (n, *tuple(image_shape))
    if ddim_steps is not None:
        _, traj = ddim_sample(
            schedule,
            model,
            shape,
            ddim_steps=ddim_steps,
            clip_x0=True,
            generator=gen,
            device=device,
            return_trajectory=True,
        )
    else:
        _, traj = sample(
            schedule, model, shape, var_type="beta", clip_x0=True, generator=gen, device=device, return_trajectory=True
        )
    available = sorted(traj, reverse=True)  # T, ..., 0
    picks = np.linspace(0, len(available) - 1, num_frames).round().astype(int)
    ts = [available[k] for k in picks]
    frames = torch.stack([traj[t].float().clamp(-1, 1) for t in ts])
    return frames, ts


# ------------------------------------------------------------------------------------------------
# python -m edudiff sample
# ------------------------------------------------------------------------------------------------
def sample_parser(prog: str = "python -m edudiff sample") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Draw images from a training checkpoint and save a PNG grid.")
    p.add_argument("--ckpt", required=True, help="checkpoint file, e.g. runs/mnist/last.pt")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument(
        "--ddim-steps", type=int, default=50, help="DDIM steps (default 50); 0 = Algorithm 2 with all T steps"
    )
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    p.add_argument("--out", default="samples.png", help="PNG file to write (default samples.png)")
    p.add_argument("--nrow", type=int, help="images per row (default: about sqrt(n))")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of their EMA")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    p.add_argument(
        "--save-tensor",
        help="also save the images as a .pt tensor (values in [-1, 1]); with --labels, the labels go beside it, "
        "in <name>.labels.pt",
    )
    p.add_argument(
        "--labels",
        help="class-conditional models: 'all' (each class in turn) or labels like 7 or 0,1,2 (repeated to --n)",
    )
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=1.0,
        help="classifier-free guidance scale s (1 = plain conditional, default; Ho & Salimans' w = s - 1)",
    )
    p.add_argument(
        "--guidance-interval",
        metavar="LO,HI",
        help="guide only the steps LO < t <= HI (e.g. 0,500), plain conditional elsewhere (default: every step)",
    )
    return p


def parse_interval(text: str, T: int | None = None) -> tuple[int, int]:
    """``"LO,HI"`` -> ``(LO, HI)``, checked by :func:`edudiff.guidance.check_guidance_interval`."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise ValueError(f"--guidance-interval must be two timesteps LO,HI such as 0,500; got {text!r}")
    try:
        return check_guidance_interval((int(parts[0]), int(parts[1])), T)
    except ValueError as err:
        raise ValueError(f"--guidance-interval: {err}") from None


def main_sample(argv: list[str], prog: str = "python -m edudiff sample") -> int:
    """``sample`` command: raises ValueError / FileNotFoundError with a clear message on bad input."""
    parser = sample_parser(prog)
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    model, schedule, state = load_model(args.ckpt, ema=not args.no_ema, device=args.device)
    if args.ddim_steps < 0 or args.ddim_steps > schedule.T:
        parser.error(f"--ddim-steps must lie in 0..T={schedule.T}, got {args.ddim_steps}")
    ddim_steps = args.ddim_steps or None  # 0 on the command line = Algorithm 2
    shape = (model.config.in_channels, *DATASET_SHAPES[dataset_key(state["config"].get("dataset", "mnist"))][1:])
    labels = None
    if args.labels is not None:
        if model.config.num_classes is None:
            parser.error(f"--labels: {args.ckpt} is an unconditional model; it takes no labels")
        labels = parse_labels(args.labels, args.n, model.config.num_classes)
    elif args.guidance_scale != 1.0 or args.guidance_interval is not None:
        parser.error("--guidance-scale and --guidance-interval need --labels (the classes to guide towards)")
    interval = None if args.guidance_interval is None else parse_interval(args.guidance_interval, schedule.T)
    t0 = time.perf_counter()
    x = sample_images(
        model,
        schedule,
        args.n,
        shape,
        ddim_steps=ddim_steps,
        eta=args.eta,
        seed=args.seed,
        progress=True,
        labels=labels,
        guidance_scale=args.guidance_scale,
        guidance_interval=interval,
    )
    path = save_image_grid(x, args.out, nrow=args.nrow or max(1, int(round(math.sqrt(args.n)))))
    if args.save_tensor:
        atomic_write(args.save_tensor, lambda f: torch.save(x, f))
        if labels is not None:
            atomic_write(labels_path(args.save_tensor), lambda f: torch.save(labels, f))
    how = f"DDIM, {ddim_steps} steps" if ddim_steps else f"Algorithm 2, {schedule.T} steps"
    if labels is not None:
        how += f", labels {args.labels}, guidance scale {args.guidance_scale:g}"
        if interval is not None:
            how += f" for {interval[0]} < t <= {interval[1]}"
    print(
        f"wrote {args.n} samples ({how}, {'EMA' if not args.no_ema else 'raw'} weights of step "
        f"{state.get('step')}) to {path} in {time.perf_counter() - t0:.1f} s"
    )
    return 0
