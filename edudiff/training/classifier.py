r"""Training the noise-aware classifier :math:`p_\phi(y|x_t, t)` that classifier guidance follows.

The recipe of Dhariwal & Nichol 2021 (sec. 4, "we train a classifier on noisy images"): draw :math:`(x_0, y)` from
the labelled training set, t ~ U{1..T} and :math:`\epsilon \sim \mathcal N(0, I)`, form
:math:`x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon` (:func:`edudiff.q_sample`, eq. 4) and take a
gradient step on the cross-entropy :math:`-\log p_\phi(y|x_t, t)`: Algorithm 1 with the eps-loss replaced by a
classification loss. The schedule must be the diffusion model's, so the classifier sees the x_t it will guide.

``python -m edudiff train-classifier --dataset mnist --out runs/mnist_classifier`` writes ``classifier.pt`` (weights
only: config, weights, betas, the accuracy against t) and prints that accuracy table; :func:`noisy_accuracy` measures
it on held-out images.

Taught in: notebooks/09_guiding_trained_models.ipynb.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .._validate import check_finite, check_positive_int
from ..config import default_device
from ..forward import q_sample
from ..nn.checkpoint import save_checkpoint
from ..nn.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from ..schedules import Schedule
from ..utils import model_device, progress_bar

__all__ = [
    "ACCURACY_TS", "train_noisy_classifier", "noisy_accuracy", "save_noisy_classifier", "main_train_classifier",
]  # fmt: skip

#: The timesteps at which the accuracy is reported (for T = 1000; scaled to other T).
ACCURACY_TS = (1, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000)


def _check_labelled(images, labels) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a tensor (N, C, H, W) in [-1, 1], got {getattr(images, 'shape', images)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must be a LongTensor (N,) = ({images.shape[0]},), one per image; "
            f"got {getattr(labels, 'shape', labels)}"
        )
    check_finite(images, "images")


def train_noisy_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    schedule: Schedule,
    config: NoisyClassifierConfig | None = None,
    steps: int = 4000,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device=None,
    progress: bool = False,
) -> tuple[NoisyClassifier, list[float]]:
    r"""Train a :class:`~edudiff.nn.NoisyClassifier` on noisy ``images`` (N, C, H, W) in [-1, 1] with ``labels`` (N,):
    each step draws a batch (with replacement), t ~ U{1..T} and eps from one seeded generator, and minimises the
    cross-entropy of :math:`p_\phi(y|x_t, t)` with AdamW (``lr`` with a 100-step warm-up and a cosine decay to 0).

    ``config`` defaults to one fitted to the images (classes = ``labels.max() + 1``). Returns the classifier in eval
    mode and the loss of every step.
    """
    _check_labelled(images, labels)
    check_positive_int(steps, "steps", fix="(optimizer steps)")
    check_positive_int(batch_size, "batch_size")
    if config is None:
        config = NoisyClassifierConfig(
            num_classes=int(labels.max()) + 1, in_channels=images.shape[1], image_size=images.shape[-1]
        )
    device = default_device() if device is None else torch.device(device)
    torch.manual_seed(seed)
    model = NoisyClassifier(config).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = min(100, steps // 10)

    def lr_at(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(steps - warmup, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    g = torch.Generator().manual_seed(seed)
    losses = []
    bar = progress_bar(range(steps), progress, desc="training the noisy classifier", leave=False)
    for _ in bar:
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
        x0, y = images[idx], labels[idx]
        t = torch.randint(1, schedule.T + 1, (batch_size,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        xt = q_sample(schedule, x0, t, eps)
        loss = F.cross_entropy(model(xt.to(device), t.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if hasattr(bar, "set_postfix") and len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3f}")
    return model.eval(), losses


@torch.no_grad()
def noisy_accuracy(
    classifier,
    schedule: Schedule,
    images: torch.Tensor,
    labels: torch.Tensor,
    ts=None,
    seed: int = 0,
    batch_size: int = 1000,
) -> dict[int, float]:
    """``{t: accuracy}``: the share of ``images`` noised to x_t (eq. 4, eps from a generator seeded ``seed``) whose
    arg-max class under ``classifier(x_t, t)`` is the label, for each t in ``ts`` (default :data:`ACCURACY_TS`,
    scaled to the schedule's T). Chance is 1 / classes; at t = T almost nothing of x_0 is left."""
    _check_labelled(images, labels)
    if ts is None:
        ts = sorted({max(1, round(t * schedule.T / 1000)) for t in ACCURACY_TS})
    device = model_device(classifier)
    out = {}
    for t in ts:
        if not 1 <= int(t) <= schedule.T:
            raise ValueError(f"every t in ts must be in 1..T = 1..{schedule.T}, got {t}")
        g = torch.Generator().manual_seed(seed + int(t))
        right = 0
        for i in range(0, images.shape[0], batch_size):
            x0 = images[i : i + batch_size]
            tt = torch.full((x0.shape[0],), int(t), dtype=torch.long)
            xt = q_sample(schedule, x0, tt, torch.randn(x0.shape, generator=g))
            pred = classifier(xt.to(device), tt.to(device)).argmax(1).cpu()
            right += int((pred == labels[i : i + batch_size]).sum())
        out[int(t)] = right / images.shape[0]
    return out


def save_noisy_classifier(path, classifier: NoisyClassifier, schedule: Schedule, info: dict | None = None) -> Path:
    """Write ``classifier`` atomically as a weights-only checkpoint: its config, float32 weights, the schedule's betas
    (float64, t = 1..T) and ``info`` (JSON-able: steps, accuracy against t, ...)."""
    state = {
        "format": "edudiff-noisy-classifier",
        "classifier_config": classifier.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in classifier.state_dict().items()},
        "betas": schedule.betas[1:].clone(),
        "info": json.loads(json.dumps(info or {})),
    }
    return save_checkpoint(path, state)


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train the noise-aware classifier p(y | x_t, t) of classifier guidance (notebook 09).",
    )
    p.add_argument("--dataset", default="mnist", help="mnist, fashion_mnist or cifar10 (default mnist)")
    p.add_argument("--steps", type=int, default=4000, help="optimizer steps (default 4000)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (AdamW, cosine decay)")
    p.add_argument("--base-channels", type=int, default=16, help="the first level's width (default 16)")
    p.add_argument("--T", type=int, default=1000, help="diffusion steps of the linear schedule (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/classifier", help="run folder for classifier.pt and accuracy.json")
    p.add_argument("--data-root", help="dataset folder (default $EDUDIFF_DATA or the repository's data/)")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, help="measure the accuracy on the first N test images (default all)")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    return p


def main_train_classifier(argv: list[str], prog: str = "python -m edudiff train-classifier") -> int:
    """``python -m edudiff train-classifier``: train, measure the accuracy against t on the test set, save."""
    from ..data import load_dataset

    args = _parser(prog).parse_args(argv)
    schedule = Schedule.linear(args.T)
    train = load_dataset(args.dataset, root=args.data_root, train=True)
    images, labels = train.images, train.labels
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    config = NoisyClassifierConfig(
        num_classes=int(train.labels.max()) + 1,
        in_channels=images.shape[1],
        image_size=images.shape[-1],
        base_channels=args.base_channels,
    )
    t0 = time.monotonic()
    model, losses = train_noisy_classifier(
        images, labels, schedule, config, args.steps, args.batch_size, args.lr, args.seed, args.device, progress=True
    )
    minutes = (time.monotonic() - t0) / 60
    test = load_dataset(args.dataset, root=args.data_root, train=False)
    n_test = args.test_limit or len(test.labels)
    acc = noisy_accuracy(model, schedule, test.images[:n_test], test.labels[:n_test], seed=args.seed)
    info = {
        "command": " ".join([prog, *argv]),
        "dataset": args.dataset,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_minutes": round(minutes, 2),
        "test_images": n_test,
        "test_accuracy_vs_t": {str(t): a for t, a in acc.items()},
        "losses": [round(v, 4) for v in losses],
    }
    out = Path(args.out)
    path = save_noisy_classifier(out / "classifier.pt", model, schedule, info)
    (out / "accuracy.json").write_text(json.dumps({k: v for k, v in info.items() if k != "losses"}, indent=1) + "\n")
    print(f"trained {args.steps} steps in {minutes:.1f} min; test accuracy against t ({n_test} images):")
    for t, a in acc.items():
        print(f"  t = {t:4d}: {a:.3f}")
    print(f"saved {path}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_train_classifier(sys.argv[1:]))
