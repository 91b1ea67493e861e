r"""How good is a trained image DDPM? Two measures, each with baselines to read it against.

1. **Negative log-likelihood bound in bits/dim** (Ho et al. 2020, Table 2: <= 3.75 on the CIFAR-10
   test set, 3.70 on train). The negative ELBO (eq. 5) of 8-bit data with the discretized decoder
   (eq. 13), :math:`L = L_T + \sum_{t=2}^T L_{t-1} + L_0`, upper-bounds :math:`-\log p_\theta(x_0)`;
   dividing by D ln 2 gives bits per dimension. :func:`nll_bits_per_dim` evaluates it

   * with all T terms (``num_timesteps=None``) through :func:`edudiff.elbo_terms` -- T network
     evaluations per image, each term with one draw of x_t ~ q(x_t|x_0) (an unbiased estimate of
     that term's expectation);
   * or, when not all T terms are evaluated, as the **unbiased Monte Carlo estimate**
     :math:`L_T + T\,\mathbb E_{t\sim U\{1..T\}}[L_{t-1}]`. It is computed with stratified sampling,
     which has the same expectation and less variance: L_0 (t = 1, the largest single term) is always
     evaluated, and t = 2..T is cut into K-1 equal strata with one t drawn per stratum per image,
     weighted by the stratum's size. The estimate is then a *random* number whose spread the
     returned standard error measures (over images, each with its own draws of t and x_t).

2. **Sample quality on MNIST** from a small CNN classifier the project trains itself
   (:class:`MNISTClassifier`, ~98.5% test accuracy after about a minute on a CPU, cached on disk):

   * the *confident fraction*: the share of samples whose top class has softmax probability > 0.9
     (a recognisable digit), and the histogram of the predicted classes (are all ten digits drawn?);
   * the *Fréchet distance* between the Gaussians fitted to the classifier's penultimate features
     (64-d) of the samples and of real training images -- FID's recipe (Heusel et al. 2017) with an
     MNIST network in place of Inception:
     :math:`d^2 = \|\mu_1-\mu_2\|^2 + \mathrm{tr}(\Sigma_1 + \Sigma_2 - 2(\Sigma_1\Sigma_2)^{1/2})`.

   :func:`mnist_sample_quality` reports the same numbers for real *test* images (the floor a perfect
   model would reach with this many images: both measures depend on the sample size) and for
   uniform-noise images (the ceiling). Scores from different sample sizes are not comparable.

Taught in: notebooks/06_unet_mnist.ipynb and notebooks/07_cifar10.ipynb (bits/dim).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

from ..elbo import bits_per_dim, elbo_terms, prior_kl, vb_terms
from ..forward import q_sample
from ..nn.checkpoint import load_model
from ..reverse import eval_mode
from ..schedules import Schedule
from ..utils import model_device, progress_bar

# The MNIST classifier and the scores built on it live in edudiff.images.sample_quality; this module re-exports them.
from .sample_quality import (
    MNISTClassifier,
    classifier_accuracy,
    classifier_outputs,
    feature_statistics,
    format_quality,
    frechet_distance,
    frechet_distance_features,
    load_or_train_classifier,
    mnist_sample_quality,
    sample_quality,
    train_classifier,
)

__all__ = [
    "zero_eps_model",
    "check_8bit",
    "nll_bits_per_dim",
    "MNISTClassifier",
    "train_classifier",
    "classifier_accuracy",
    "load_or_train_classifier",
    "classifier_outputs",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_features",
    "sample_quality",
    "mnist_sample_quality",
    "format_quality",
    "main",
]


# ------------------------------------------------------------------------------------------------
# Bits per dimension
# ------------------------------------------------------------------------------------------------
def zero_eps_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The trivial eps-model eps_theta(x_t, t) = 0 (what a zero-initialised U-Net computes before
    training): a baseline for the bound, mu_theta(x_t) = x_t / sqrt(alpha_t)."""
    return torch.zeros_like(x)


def check_8bit(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Raise unless ``images`` are 8-bit values mapped to [-1, 1] (v / 127.5 - 1), as the discretized
    decoder (eq. 13) needs; returns them."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.ndim < 2:
        raise TypeError(f"{name} must be a float tensor (N, C, H, W) in [-1, 1]")
    v = (images.double() + 1.0) * 127.5
    if (
        not bool(torch.isfinite(v).all())
        or float(v.min()) < -1e-3
        or float(v.max()) > 255 + 1e-3
        or float((v - v.round()).abs().max()) > 1e-3
    ):
        raise ValueError(
            f"{name} must hold 8-bit data mapped to [-1, 1] (uint8 v -> v/127.5 - 1), as "
            f"edudiff.data returns it; quantize generated images first with "
            f"edudiff.data.from_uint8(edudiff.data.to_uint8(x))"
        )
    return images


@torch.no_grad()
def nll_bits_per_dim(
    model,
    schedule: Schedule,
    images: torch.Tensor,
    num_timesteps: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    var_type: str = "fixedlarge",
    stratified: bool = True,
    device=None,
    progress: bool = False,
) -> dict:
    r"""The negative ELBO of 8-bit ``images`` (N, C, H, W) in bits/dim, with the discretized decoder.

    ``num_timesteps=None`` (or >= T): all T terms via :func:`edudiff.elbo_terms`. Otherwise the unbiased
    estimate :math:`L_T + T\,\mathbb E_t[L_{t-1}]` from ``num_timesteps`` = K evaluations per image
    (``stratified=True``: L_0 exactly plus one t from each of K-1 equal strata of 2..T; ``False``: K
    draws of t ~ U{1..T}, each weighted T/K). See the module docstring.

    Returns a dict: ``bpd`` (mean over images), ``stderr`` (its standard error over images),
    ``per_image`` (float64 tensor (N,)), ``prior_bpd`` / ``l0_bpd`` / ``diffusion_bpd`` (the mean
    contributions of L_T, L_0 and sum_{t>=2} L_{t-1}; for ``stratified=False`` the L_0 share is
    folded into ``diffusion_bpd``), ``num_timesteps`` (K, or T), ``exact_sum`` (True when all T terms
    were evaluated) and ``method`` (a sentence saying which estimate this is).

    ``var_type`` defaults to ``"fixedlarge"``: sigma_t^2 = beta_t with sigma_1^2 = beta-tilde_2 at t = 1, the
    decoder variance of the paper's released code, so the figure is computed the way the paper's 3.75 bits/dim
    was (:meth:`edudiff.Schedule.model_log_variance`); ``"beta"`` is the paper's text read literally.
    """
    check_8bit(images)
    T = schedule.T
    device = model_device(model, device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    K = T if num_timesteps is None or int(num_timesteps) >= T else int(num_timesteps)
    minimum = 2 if stratified else 1
    if minimum > K:
        raise ValueError(f"num_timesteps must be >= {minimum} (or None for all T), got {num_timesteps}")
    D = images[0].numel()
    parts = {"total": [], "prior": [], "l0": [], "diff": []}  # bits/dim per image
    batches = progress_bar(range(0, images.shape[0], batch_size), progress, desc="bits/dim", leave=False)
    with eval_mode(model):
        for start in batches:
            x0 = images[start : start + batch_size].to(device=device, dtype=torch.float32)
            prior, l0, diff = _bound_terms(schedule, model, x0, K, stratified, var_type, gen)
            for key, nats in (("total", prior + l0 + diff), ("prior", prior), ("l0", l0), ("diff", diff)):
                parts[key].append(bits_per_dim(nats, D).cpu())
    per_image = torch.cat(parts["total"])
    n = per_image.numel()
    return {
        "bpd": float(per_image.mean()),
        "stderr": float(per_image.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"),
        "per_image": per_image,
        "prior_bpd": float(torch.cat(parts["prior"]).mean()),
        "l0_bpd": float(torch.cat(parts["l0"]).mean()),
        "diffusion_bpd": float(torch.cat(parts["diff"]).mean()),
        "num_timesteps": K,
        "exact_sum": K == T,
        "n_images": n,
        "method": _method(T, K, stratified),
    }


def _bound_terms(schedule, model, x0, K: int, stratified: bool, var_type: str, gen):
    """``(L_T, L_0, sum_{t>=2} L_{t-1})`` per image, float64 (B,) each: all T terms when K = T, else the
    estimate of :func:`nll_bits_per_dim` from K terms (for ``stratified=False`` L_0 is folded into the sum)."""
    T, B, device = schedule.T, x0.shape[0], x0.device
    if K == T:
        out = elbo_terms(schedule, model, x0, var_type=var_type, decoder="discretized", generator=gen)
        vb = out["vb"].double()
        return out["prior"].double(), vb[:, 0], vb[:, 1:].sum(1)  # column 0 is t = 1
    prior = prior_kl(schedule, x0).double()
    diff = torch.zeros(B, dtype=torch.float64, device=device)
    if not stratified:
        for _ in range(K):
            t = torch.randint(1, T + 1, (B,), generator=gen, device=device)
            diff += (T / K) * _term(schedule, model, x0, t, var_type, gen).double()
        return prior, torch.zeros(B, dtype=torch.float64, device=device), diff
    l0 = _term(schedule, model, x0, torch.ones(B, dtype=torch.long, device=device), var_type, gen).double()
    edges = np.linspace(2, T + 1, K).round().astype(int)  # K-1 strata [lo, hi) of 2..T
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi > lo:
            t = torch.randint(int(lo), int(hi), (B,), generator=gen, device=device)
            diff += (hi - lo) * _term(schedule, model, x0, t, var_type, gen).double()
    return prior, l0, diff


def _method(T: int, K: int, stratified: bool) -> str:
    if K == T:
        return f"all T={T} terms of the bound (one x_t draw each) via edudiff.elbo_terms"
    if stratified:
        return (
            f"unbiased estimate L_T + T*E_t[L_(t-1)] from {K} terms per image: L_0 exactly plus one t "
            f"from each of {K - 1} strata of 2..{T} (stratified sampling)"
        )
    return f"unbiased estimate L_T + T*E_t[L_(t-1)] from {K} draws of t ~ U{{1..{T}}} per image"


def _term(schedule, model, x0, t, var_type, gen) -> torch.Tensor:
    """L_{t-1} (or L_0 where t = 1) for each row's own t, with x_t ~ q(x_t | x_0)."""
    xt = q_sample(schedule, x0, t, generator=gen)
    return vb_terms(schedule, model, x0, xt, t, var_type=var_type, decoder="discretized")


# ------------------------------------------------------------------------------------------------
# Command line: python -m edudiff evaluate --ckpt runs/mnist/last.pt
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m edudiff evaluate --ckpt CKPT``: bits/dim on test
    images and, for MNIST, the classifier scores."""
    p = argparse.ArgumentParser(
        prog="python -m edudiff evaluate",
        description="Evaluate a training checkpoint: the NLL bound in bits/dim on "
        "test images and, for MNIST, sample quality from a small classifier.",
    )
    p.add_argument("--ckpt", required=True, help="checkpoint, e.g. runs/mnist/last.pt")
    p.add_argument("--n-images", type=int, default=64, help="test images for bits/dim (default 64)")
    p.add_argument(
        "--timesteps",
        type=int,
        default=100,
        help="terms per image for the bits/dim estimate (default 100; 0 = all T, exact sum)",
    )
    p.add_argument("--n-samples", type=int, default=256, help="samples for the classifier scores (MNIST; default 256)")
    p.add_argument("--ddim-steps", type=int, default=50, help="DDIM steps for the samples (0 = Algorithm 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", help="dataset folder (default $EDUDIFF_DATA)")
    p.add_argument("--cache-dir", help="where the MNIST classifier is cached (default <data root>/edudiff_cache)")
    p.add_argument("--device", help="cpu, cuda, mps (default: the best available)")
    args = p.parse_args(argv)
    try:
        from ..data import DATASET_SHAPES, from_uint8, load_dataset, to_uint8
        from .generate import sample_images

        model, schedule, state = load_model(args.ckpt, device=args.device)
        dataset = state["config"]["dataset"]
        test = load_dataset(dataset, root=args.data_root, train=False)
        g = torch.Generator().manual_seed(args.seed)
        idx = torch.randperm(len(test), generator=g)[: args.n_images]
        t0 = time.perf_counter()
        res = nll_bits_per_dim(
            model, schedule, test.images[idx], num_timesteps=args.timesteps or None, seed=args.seed, progress=True
        )
        print(
            f"NLL bound on {res['n_images']} {dataset} test images: {res['bpd']:.3f} +- {res['stderr']:.3f} "
            f"bits/dim ({res['method']}; {time.perf_counter() - t0:.0f} s)"
        )
        if dataset == "mnist":
            x = sample_images(
                model,
                schedule,
                args.n_samples,
                DATASET_SHAPES[dataset],
                ddim_steps=args.ddim_steps or None,
                seed=args.seed,
                progress=True,
            )
            x = from_uint8(to_uint8(x))  # generated images are stored as 8-bit images, as the real ones
            clf, info = load_or_train_classifier(
                cache_dir=args.cache_dir, root=args.data_root, device=args.device, progress=True
            )
            print(f"classifier: {info['test_accuracy']:.4f} test accuracy ({info['path']})")
            print(format_quality(mnist_sample_quality(x, clf, root=args.data_root, seed=args.seed)))
        return 0
    except (ValueError, FileNotFoundError) as err:
        print(f"edudiff evaluate: error: {err}", file=sys.stderr)
        return 2
