r"""Sample quality on MNIST from a small CNN classifier the project trains itself (:class:`MNISTClassifier`,
~98.5% test accuracy after about a minute on a CPU, cached on disk) -- see :mod:`edudiff.images.evaluate`:

* the *confident fraction*: the share of samples whose top class has softmax probability > 0.9
  (a recognisable digit), and the histogram of the predicted classes (are all ten digits drawn?);
* the *Fréchet distance* between the Gaussians fitted to the classifier's penultimate features (64-d) of
  the samples and of real training images -- FID's recipe (Heusel et al. 2017) with an MNIST network in
  place of Inception.

Taught in: notebooks/06_unet_mnist.ipynb.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import data_root, default_device, fast_mode
from ..nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ..reverse import eval_mode
from ..utils import model_device, progress_bar

__all__ = [
    "MNISTClassifier", "train_classifier", "classifier_accuracy", "load_or_train_classifier", "classifier_outputs",
    "feature_statistics", "frechet_distance", "frechet_distance_features", "sample_quality", "mnist_sample_quality",
    "format_quality",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------
# The MNIST classifier
# ------------------------------------------------------------------------------------------------
class MNISTClassifier(nn.Module):
    """A small CNN for 28x28 digits in [-1, 1]: conv(16)-pool-conv(32)-pool-fc(64)-fc(10).

    ``features(x)`` (B, 64) is the penultimate layer (after its ReLU) used for the Fréchet distance;
    ``forward(x)`` gives the 10 logits. 32x32 inputs (MNIST padded by 2) are center-cropped to 28x28.
    """

    FEATURES = 64

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, self.FEATURES)
        self.fc2 = nn.Linear(self.FEATURES, 10)

    @staticmethod
    def _prepare(x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) not in ((28, 28), (32, 32)):
            raise ValueError(
                f"the MNIST classifier takes images (B, 1, 28, 28) (or 32x32, cropped); got shape {tuple(x.shape)}"
            )
        return x[..., 2:30, 2:30] if x.shape[-1] == 32 else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prepare(x)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def _default_classifier_steps() -> int:
    return 200 if fast_mode() else 800


def train_classifier(
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    steps: int | None = None,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    root=None,
    device=None,
    progress: bool = False,
) -> MNISTClassifier:
    """Train :class:`MNISTClassifier` with Adam (``lr`` decayed linearly to 0) for ``steps`` steps
    (default 800, ~98.5% test accuracy; 200 in fast mode, ~95%) on ``images``/``labels`` (default:
    the MNIST training set from ``root``). Batches are drawn with replacement from a seeded generator.
    Returns the model in eval mode."""
    if images is None or labels is None:
        from ..data import load_mnist

        ds = load_mnist(root, train=True)
        images, labels = ds.images, ds.labels
    steps = _default_classifier_steps() if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = default_device() if device is None else torch.device(device)
    torch.manual_seed(seed)
    model = MNISTClassifier().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
    g = torch.Generator().manual_seed(seed)
    it = progress_bar(range(steps), progress, desc="training the MNIST classifier", leave=False)
    model.train()
    for _ in it:
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
        loss = F.cross_entropy(model(images[idx].to(device)), labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def classifier_accuracy(
    model: MNISTClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000
) -> float:
    """Fraction of ``images`` whose arg-max class equals ``labels``."""
    probs, _ = classifier_outputs(model, images, batch_size)
    return float((probs.argmax(1) == labels.cpu()).double().mean())


_CLASSIFIER_VERSION = 1


def load_or_train_classifier(
    cache_dir=None, steps: int | None = None, seed: int = 0, root=None, device=None, progress: bool = False
) -> tuple[MNISTClassifier, dict]:
    """The MNIST classifier, trained once and cached as a checkpoint.

    The file ``mnist_classifier_<steps>steps_seed<seed>.pt`` lives in ``cache_dir`` (default
    ``<data root>/edudiff_cache``; a run folder works too). A missing or unreadable cache is
    (re)built: :func:`train_classifier`, then its accuracy on the MNIST test set is measured and saved
    with it. Returns ``(model, info)`` with info keys ``test_accuracy``, ``steps``, ``path``, ``cached``.
    """
    steps = _default_classifier_steps() if steps is None else int(steps)
    cache_dir = Path(cache_dir) if cache_dir is not None else data_root(root) / "edudiff_cache"
    path = cache_dir / f"mnist_classifier_{steps}steps_seed{seed}.pt"
    device = default_device() if device is None else torch.device(device)
    if path.exists():
        try:
            state = load_checkpoint(path, required=("model", "test_accuracy", "version"))
            if state["version"] == _CLASSIFIER_VERSION:
                model = MNISTClassifier()
                model.load_state_dict(state["model"])
                return model.to(device).eval(), {
                    "test_accuracy": float(state["test_accuracy"]),
                    "steps": steps,
                    "path": path,
                    "cached": True,
                }
        except (CheckpointError, RuntimeError) as err:
            warnings.warn(f"the cached classifier {path} is unusable ({err}); training it again", stacklevel=2)
    from ..data import load_mnist

    train_ds, test_ds = load_mnist(root, train=True), load_mnist(root, train=False)
    model = train_classifier(train_ds.images, train_ds.labels, steps=steps, seed=seed, device=device, progress=progress)
    acc = classifier_accuracy(model, test_ds.images, test_ds.labels)
    try:
        save_checkpoint(
            path,
            {
                "model": {k: v.cpu() for k, v in model.state_dict().items()},
                "test_accuracy": acc,
                "steps": steps,
                "seed": seed,
                "version": _CLASSIFIER_VERSION,
            },
        )
    except OSError as err:  # a read-only data folder: go on without the cache
        warnings.warn(
            f"could not cache the classifier at {path} ({err}); pass cache_dir= a writable folder", stacklevel=2
        )
    return model, {"test_accuracy": acc, "steps": steps, "path": path, "cached": False}


@torch.no_grad()
def classifier_outputs(model: MNISTClassifier, images: torch.Tensor, batch_size: int = 1000):
    """Softmax probabilities (N, 10) and penultimate features (N, 64) of ``images``, float64 on the CPU."""
    device = model_device(model)
    probs, feats = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device=device, dtype=torch.float32)
            f = model.features(x)
            probs.append(torch.softmax(model.fc2(f), dim=1).double().cpu())
            feats.append(f.double().cpu())
    return torch.cat(probs), torch.cat(feats)


# ------------------------------------------------------------------------------------------------
# Fréchet distance
# ------------------------------------------------------------------------------------------------
def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) (unbiased, float64) of features (N, d)."""
    f = (
        features.detach().cpu().double().numpy()
        if isinstance(features, torch.Tensor)
        else np.asarray(features, dtype=np.float64)
    )
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N, d) with N >= 2, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    r"""Fréchet (2-Wasserstein) distance squared between N(mu1, sigma1) and N(mu2, sigma2):

    .. math:: d^2 = \|\mu_1-\mu_2\|^2 + \mathrm{tr}\,\Sigma_1 + \mathrm{tr}\,\Sigma_2
              - 2\,\mathrm{tr}(\Sigma_1\Sigma_2)^{1/2}

    (Dowson & Landau 1982; the formula of FID). The matrix square root is ``scipy.linalg.sqrtm``; if
    the product is singular enough to make it non-finite, ``eps`` is added to both diagonals (as
    pytorch-fid does). Tiny imaginary parts from round-off are dropped. With singular covariances
    (fewer samples than dimensions) the result is accurate to about 1e-7 of the covariances' scale.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not fit: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():  # rank-deficient covariances (N < d, dead features) are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance_features(features1, features2) -> float:
    """:func:`frechet_distance` between Gaussians fitted to two feature sets (N1, d) and (N2, d)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


# ------------------------------------------------------------------------------------------------
# Sample quality on MNIST
# ------------------------------------------------------------------------------------------------
def sample_quality(
    classifier: MNISTClassifier,
    images: torch.Tensor,
    reference_features: torch.Tensor,
    threshold: float = 0.9,
    labels: torch.Tensor | None = None,
) -> dict:
    """Classifier-based scores of ``images`` (N, 1, 28, 28) in [-1, 1]:

    ``confident_fraction`` (share with max softmax > ``threshold``), ``mean_max_prob``,
    ``class_counts`` (predicted classes, length 10), ``fd`` (Fréchet distance of the penultimate
    features to ``reference_features``), ``n``. With ``labels`` (N,), the classes the images were asked to show:
    ``class_match``, the share classified as their label with probability > ``threshold``, and
    ``class_match_per_class`` (length 10; NaN for a class not asked for).
    """
    probs, feats = classifier_outputs(classifier, images)
    maxp, cls = probs.max(dim=1)
    out = {
        "confident_fraction": float((maxp > threshold).double().mean()),
        "mean_max_prob": float(maxp.mean()),
        "class_counts": torch.bincount(cls, minlength=10).tolist(),
        "fd": frechet_distance_features(feats, reference_features),
        "n": int(images.shape[0]),
    }
    if labels is not None:
        labels = torch.as_tensor(labels).long().cpu().reshape(-1)
        if labels.shape[0] != images.shape[0] or bool(((labels < 0) | (labels > 9)).any()):
            raise ValueError(f"labels must be {images.shape[0]} digit classes 0..9, one per image")
        match = (cls == labels) & (maxp > threshold)
        out["class_match"] = float(match.double().mean())
        out["class_match_per_class"] = [
            float(match[labels == k].double().mean()) if bool((labels == k).any()) else float("nan") for k in range(10)
        ]
    return out


def mnist_sample_quality(
    samples: torch.Tensor,
    classifier: MNISTClassifier | None = None,
    n_reference: int = 5000,
    threshold: float = 0.9,
    seed: int = 0,
    root=None,
    cache_dir=None,
    labels: torch.Tensor | None = None,
) -> dict:
    """Score generated digits with :func:`sample_quality`, next to the baselines with the same N:

    * ``"samples"``: the generated images;
    * ``"real_test"``: N real MNIST *test* images -- the floor (what a perfect generator would score);
    * ``"noise"``: N images of uniform noise in [-1, 1] -- the ceiling.

    The reference features come from ``n_reference`` real *training* images (a seeded random subset). With
    ``labels`` (the digit each sample was asked to show, class-conditional sampling), the samples also get
    ``class_match``, and the real test images theirs against their true labels (the floor).
    ``classifier`` defaults to :func:`load_or_train_classifier` (``cache_dir``). Returns a dict of the
    three score dicts plus ``n``, ``n_reference`` and ``threshold``; print it with :func:`format_quality`.
    """
    from ..data import load_mnist

    if classifier is None:
        classifier, _ = load_or_train_classifier(cache_dir=cache_dir, root=root)
    n = int(samples.shape[0])
    if n < 2:
        raise ValueError(f"samples must hold at least 2 images for a covariance, got {n}")
    g = torch.Generator().manual_seed(seed)
    train_ds, test_ds = load_mnist(root, train=True), load_mnist(root, train=False)
    ref_idx = torch.randperm(train_ds.images.shape[0], generator=g)[:n_reference]
    _, ref_feats = classifier_outputs(classifier, train_ds.images[ref_idx])
    test_idx = torch.randperm(test_ds.images.shape[0], generator=g)[:n]
    noise = torch.rand((n, 1, 28, 28), generator=g) * 2 - 1
    return {
        "samples": sample_quality(classifier, samples.float().cpu(), ref_feats, threshold, labels),
        "real_test": sample_quality(
            classifier,
            test_ds.images[test_idx],
            ref_feats,
            threshold,
            None if labels is None else test_ds.labels[test_idx],
        ),
        "noise": sample_quality(classifier, noise, ref_feats, threshold),
        "n": n,
        "n_reference": int(ref_feats.shape[0]),
        "threshold": threshold,
    }


def format_quality(result: dict) -> str:
    """A small table of :func:`mnist_sample_quality`'s result."""
    lines = [
        f"MNIST sample quality (N = {result['n']} images each, reference = {result['n_reference']} train images)",
        f"{'':<26}{'confident (p>' + str(result['threshold']) + ')':>18}{'Frechet dist.':>15}  classes predicted",
    ]
    names = {
        "samples": "generated samples",
        "real_test": "real test images (floor)",
        "noise": "uniform noise (ceiling)",
    }
    for key in ("samples", "real_test", "noise"):
        r = result[key]
        lines.append(f"{names[key]:<26}{r['confident_fraction']:>18.3f}{r['fd']:>15.2f}  {r['class_counts']}")
    if "class_match" in result["samples"]:
        ours, real = result["samples"]["class_match"], result["real_test"]["class_match"]
        lines.append(
            f"class match (classified as the digit asked for, p>{result['threshold']}): samples {ours:.3f}, "
            f"real test digits (true labels) {real:.3f}"
        )
    return "\n".join(lines)
