"""Toy mixtures: the closed forms against numerical integration on a grid, scipy, autograd and simulation."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from edudiff import Schedule, q_sample
from edudiff.toy import GaussianMixture, ring_2d, two_gaussians_1d

trap = np.trapezoid if hasattr(np, "trapezoid") else np.trapz
MIX = two_gaussians_1d()
S = Schedule.linear(1000)


def mixture_pdf_np(x, w, m, sd):
    return sum(wk * stats.norm(mk, sk).pdf(x) for wk, mk, sk in zip(w, m, sd))


def test_log_prob_equals_scipy():
    x = np.linspace(-4, 4, 41)
    expected = np.log(mixture_pdf_np(x, [0.3, 0.7], [-2, 1.5], [0.5, 0.3]))
    assert np.allclose(MIX.log_prob(torch.tensor(x)).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("t", [1, 50, 300, 1000])
def test_marginal_equals_numerical_convolution(t):
    """q(x_t) = integral p(x_0) N(x_t; sqrt(ab) x_0, 1 - ab) dx_0, computed on a grid."""
    ab = S.alpha_bars[t].item()
    x0 = np.linspace(-6, 6, 24001)
    p0 = mixture_pdf_np(x0, [0.3, 0.7], [-2, 1.5], [0.5, 0.3])
    for xt in (-2.0, 0.1, 1.4):
        expected = trap(p0 * stats.norm(math.sqrt(ab) * x0, math.sqrt(1 - ab)).pdf(xt), x0)
        got = MIX.marginal(S, t).log_prob(torch.tensor([xt])).exp().item()
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_marginal_matches_simulated_particles():
    g = torch.Generator().manual_seed(0)
    x0 = MIX.sample(20000, generator=g)
    for t in (10, 200):
        xt = q_sample(S, x0, torch.full((20000,), t), generator=g).numpy()
        marg = MIX.marginal(S, t)
        parts = list(zip(marg.weights.tolist(), marg.means[:, 0].tolist(), marg.stds.tolist()))

        def cdf(x, parts=parts):
            return sum(w * stats.norm(m, s).cdf(x) for w, m, s in parts)

        assert stats.kstest(xt, cdf).pvalue > 1e-3


@pytest.mark.parametrize("t", [1, 20, 400])
def test_posterior_mean_x0_equals_bayes_on_a_grid(t):
    ab = S.alpha_bars[t].item()
    x0 = np.linspace(-6, 6, 48001)
    p0 = mixture_pdf_np(x0, [0.3, 0.7], [-2, 1.5], [0.5, 0.3])
    xts = np.array([-1.8, 0.0, 1.2])
    got = MIX.posterior_mean_x0(S, torch.tensor(xts), t).numpy()
    for xt, g in zip(xts, got):
        w = p0 * stats.norm(math.sqrt(ab) * x0, math.sqrt(1 - ab)).pdf(xt)
        assert g == pytest.approx(trap(x0 * w, x0) / trap(w, x0), abs=1e-6)


@pytest.mark.parametrize("mix", [two_gaussians_1d(), ring_2d()])
def test_score_and_optimal_eps_agree_with_autograd(mix):
    """score = grad log q_t (autograd of the marginal's density); eps* = -sqrt(1 - ab) score (Tweedie)."""
    g = torch.Generator().manual_seed(0)
    t = 120
    x = mix.sample(64, generator=g).requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.marginal(S, t).log_prob(x).sum(), x)
    assert torch.allclose(mix.score(S, x.detach(), t), grad, atol=1e-10)
    eps = mix.optimal_eps(S, x.detach(), t)
    assert torch.allclose(eps, -math.sqrt(1 - S.alpha_bars[t].item()) * grad, atol=1e-9)


def test_2d_posterior_mean_against_a_grid():
    ring = ring_2d(k=4, radius=1.5, std=0.3)
    t = 150
    ab = S.alpha_bars[t].item()
    ax = np.linspace(-3.5, 3.5, 701)
    X, Y = np.meshgrid(ax, ax, indexing="ij")
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], 1))
    p0 = ring.log_prob(pts).exp().numpy()
    xt = np.array([0.4, -0.9])
    lik = np.exp(-((math.sqrt(ab) * pts.numpy() - xt) ** 2).sum(1) / (2 * (1 - ab)))
    w = p0 * lik
    expected = (pts.numpy() * w[:, None]).sum(0) / w.sum()
    got = ring.posterior_mean_x0(S, torch.tensor(xt[None]), t)[0].numpy()
    assert np.allclose(got, expected, atol=1e-5)


def test_sampling_moments_and_shapes():
    g = torch.Generator().manual_seed(2)
    x = MIX.sample(100000, generator=g)
    assert x.shape == (100000,) and x.dtype == torch.float64
    assert abs(x.mean().item() - MIX.mean().item()) < 5 * math.sqrt(MIX.variance().item() / 1e5)
    r = ring_2d().sample(10, generator=g)
    assert r.shape == (10, 2)
    # optimal_eps with a per-row t tensor groups rows by step
    t = torch.tensor([1, 5, 5, 900, 1, 2, 3, 4, 5, 6])
    e = ring_2d().optimal_eps(S, r, t)
    assert torch.allclose(e[1:3], ring_2d().optimal_eps(S, r[1:3], 5))


def test_bad_mixtures_are_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture([0.5, 0.6], [0, 1], [1, 1])
    with pytest.raises(ValueError, match="same number of components"):
        GaussianMixture([1.0], [0, 1], [1, 1])
    with pytest.raises(ValueError, match="stds must be positive"):
        GaussianMixture([1.0], [0.0], [0.0])
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        ring_2d().log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match=r"0\.\.T=1000"):
        MIX.marginal(S, 1001)
