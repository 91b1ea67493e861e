"""ELBO pieces: KL against Monte Carlo / quadrature / scipy densities; the discretized decoder against
scipy's normal CDF; the whole bound against exact results for Gaussian and Gaussian-mixture data."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from edudiff import (
    Schedule,
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    elbo_terms,
    gaussian_log_likelihood,
    l_0,
    l_t_minus_1,
    normal_kl,
    prior_kl,
    vb_terms,
)
from edudiff.toy import GaussianMixture, two_gaussians_1d

f64 = lambda *a: torch.tensor(a, dtype=torch.float64)  # noqa: E731


@pytest.mark.parametrize("m1, s1, m2, s2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -1.0, 2.0), (2.0, 3.0, 0.0, 0.7)])
def test_normal_kl_equals_quadrature(m1, s1, m2, s2):
    p, q = stats.norm(m1, s1), stats.norm(m2, s2)
    expected, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -np.inf, np.inf)
    got = normal_kl(f64(m1), f64(2 * math.log(s1)), f64(m2), f64(2 * math.log(s2))).item()
    assert got == pytest.approx(expected, abs=1e-9)


def test_normal_kl_multivariate_equals_monte_carlo_with_scipy_densities():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=3), rng.normal(size=3)
    v1, v2 = rng.uniform(0.2, 2, size=3), rng.uniform(0.2, 2, size=3)
    p, q = stats.multivariate_normal(m1, np.diag(v1)), stats.multivariate_normal(m2, np.diag(v2))
    x = p.rvs(size=200000, random_state=rng)
    ratio = p.logpdf(x) - q.logpdf(x)
    kl = normal_kl(torch.tensor(m1), torch.tensor(v1).log(), torch.tensor(m2), torch.tensor(v2).log()).sum().item()
    assert abs(ratio.mean() - kl) < 5 * ratio.std() / math.sqrt(len(x))


@settings(max_examples=100, deadline=None)
@given(st.floats(-5, 5), st.floats(-4, 4), st.floats(-5, 5), st.floats(-4, 4))
def test_normal_kl_is_nonnegative_and_zero_only_at_equality(m1, lv1, m2, lv2):
    kl = normal_kl(f64(m1), f64(lv1), f64(m2), f64(lv2)).item()
    assert kl >= -1e-12
    assert normal_kl(f64(m1), f64(lv1), f64(m1), f64(lv1)).item() == pytest.approx(0.0, abs=1e-12)
    if abs(m1 - m2) > 1e-3 or abs(lv1 - lv2) > 1e-3:
        assert kl > 0


def test_gaussian_log_likelihood_equals_scipy():
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)
    got = gaussian_log_likelihood(x, 0.5, torch.tensor(math.log(0.7), dtype=torch.float64))
    assert np.allclose(got.numpy(), stats.norm(0.5, 0.7).logpdf(x.numpy()), atol=1e-12)


LEVELS = torch.arange(256, dtype=torch.float64) / 127.5 - 1


@pytest.mark.parametrize(
    "mean, scale", [(0.0, 1.0), (0.3, 0.01), (-0.99, 1e-3), (1.0, 0.5), (5.0, 0.1), (0.2, 1e-4), (-3.0, 2.0)]
)
def test_discretized_likelihood_sums_to_one_and_matches_scipy(mean, scale):
    logp = discretized_gaussian_log_likelihood(LEVELS, f64(mean), f64(math.log(scale)))
    assert bool(torch.isfinite(logp).all())
    assert torch.logsumexp(logp, 0).exp().item() == pytest.approx(1.0, abs=1e-9)
    edges = np.concatenate([[-np.inf], (LEVELS[:-1].numpy() + 1 / 255), [np.inf]])
    probs = np.diff(stats.norm(mean, scale).cdf(edges))
    big = probs > 1e-12  # compare where scipy's plain CDF differences are not lost in rounding
    assert np.allclose(logp.numpy()[big], np.log(probs[big]), rtol=1e-7, atol=1e-9)


def test_discretized_likelihood_far_tails_stay_finite_and_ordered():
    # bins 30 and 40 standard deviations above the mean: plain CDF differences would give log(0)
    x = f64(1 - 2 / 255, 1 - 4 / 255)
    logp = discretized_gaussian_log_likelihood(x, f64(0.0), f64(math.log(0.025)))
    assert bool(torch.isfinite(logp).all()) and logp[0] < logp[1]
    # asymptotically log(bin width * pdf at the bin centre) (the density barely varies across a bin... in log)
    approx = stats.norm(0, 0.025).logpdf(x.numpy()) + math.log(2 / 255)
    assert np.allclose(logp.numpy(), approx, rtol=0.05)


def test_discretized_likelihood_refuses_data_outside_minus_one_one():
    with pytest.raises(ValueError, match=r"x must lie in \[-1, 1\]"):
        discretized_gaussian_log_likelihood(f64(1.5), f64(0.0), f64(0.0))


def test_prior_term_is_about_1e_5_bits_per_dim_for_the_paper_schedule():
    """Ho et al. sec. 4: with the linear T=1000 schedule, L_T ~ 1e-5 bits per dimension."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 256, (8, 3, 32, 32), generator=g).double() / 127.5 - 1
    bpd = bits_per_dim(prior_kl(Schedule.linear(1000), x0), 3 * 32 * 32)
    assert bool(((bpd > 3e-6) & (bpd < 3e-5)).all()), bpd


def test_bound_is_exact_for_standard_normal_data_with_sigma_beta():
    """Sec. 3.2: sigma_t^2 = beta_t is optimal for x_0 ~ N(0, 1); then p_theta equals q's reverse
    process, and E[-ELBO] is exactly the entropy 0.5 log(2 pi e) (continuous decoder)."""
    s = Schedule.linear(100, beta_T=0.1)
    std_normal = GaussianMixture([1.0], [0.0], [1.0])
    g = torch.Generator().manual_seed(0)
    x0 = std_normal.sample(4000, generator=g)
    out = elbo_terms(s, std_normal.optimal_eps_model(s), x0, var_type="beta", decoder="gaussian", generator=g)
    total = out["total"]
    entropy = 0.5 * math.log(2 * math.pi * math.e)
    assert abs(total.mean().item() - entropy) < 5 * total.std().item() / math.sqrt(len(total))


def test_bound_terms_vanish_for_a_point_mass_with_sigma_beta_tilde():
    """Sec. 3.2: sigma_t^2 = beta-tilde_t is optimal for a single data point: every L_{t-1}, t>=2, is 0."""
    s = Schedule.linear(50, beta_T=0.2)
    point = GaussianMixture([1.0], [0.7], [1e-9])
    x0 = torch.full((16,), 0.7, dtype=torch.float64)
    out = elbo_terms(
        s,
        point.optimal_eps_model(s),
        x0,
        var_type="beta_tilde",
        decoder="gaussian",
        generator=torch.Generator().manual_seed(1),
    )
    assert out["vb"][:, 1:].abs().max().item() < 1e-8


def test_negative_elbo_bounds_the_mixture_entropy_and_tightens_with_T():
    """For the 1-D mixture the exact model's -ELBO >= -log p(x_0) on average, and the gap shrinks with T."""
    mix = two_gaussians_1d()
    g = torch.Generator().manual_seed(0)
    x0 = mix.sample(3000, generator=g)
    nll = -mix.log_prob(x0)
    gaps = []
    for T in (50, 250):
        s = Schedule.linear(T, 1e-4 * 1000 / T, 0.02 * 1000 / T)
        out = elbo_terms(s, mix.optimal_eps_model(s), x0, var_type="beta", decoder="gaussian", generator=g)
        diff = out["total"] - nll
        assert diff.mean().item() > -5 * diff.std().item() / math.sqrt(len(diff)), T
        gaps.append(diff.mean().item())
    assert gaps[1] < gaps[0]


def test_term_functions_agree_with_vb_terms_and_check_t():
    s = Schedule.linear(10)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x0 = torch.randint(0, 256, (4, 1, 2, 2)).double() / 127.5 - 1
    xt = torch.randn_like(x0)
    assert torch.equal(l_t_minus_1(s, model, x0, xt, torch.full((4,), 5)), vb_terms(s, model, x0, xt, 5))
    assert torch.equal(l_0(s, model, x0, xt), vb_terms(s, model, x0, xt, 1))
    with pytest.raises(ValueError, match="t >= 2"):
        l_t_minus_1(s, model, x0, xt, torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="decoder must be"):
        vb_terms(s, model, x0, xt, 1, decoder="laplace")
    with pytest.raises(ValueError, match="timesteps"):
        elbo_terms(s, model, x0, timesteps=[0, 3])


@pytest.mark.parametrize("var_type", ["beta", "fixedlarge"])
def test_l0_equals_the_gaussian_integrated_over_each_bin_on_a_grid(var_type):
    """L_0 = -log p(x_0|x_1) for 8-bit data, against the decoder density integrated over each pixel's bin
    with the trapezoid rule; sigma_1^2 from the betas by hand: beta_1 ('beta', the paper's text) or
    beta-tilde_2 = beta_2 (1 - alpha_1) / (1 - alpha_1 alpha_2) ('fixedlarge', the released code)."""
    s = Schedule.linear(1000)
    b1, b2 = 1e-4, 1e-4 + (0.02 - 1e-4) / 999
    sigma2 = {"beta": b1, "fixedlarge": b2 * b1 / (1 - (1 - b1) * (1 - b2))}[var_type]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(1, 255, (3, 1, 2, 2), generator=g).double() / 127.5 - 1  # inner levels: closed bins
    x1 = math.sqrt(1 - b1) * x0 + math.sqrt(b1) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731  eps = 0: the mean is x_1 / sqrt(alpha_1) (eq. 11)
    mean = (x1 / math.sqrt(1 - b1)).numpy().reshape(3, -1)
    want = np.zeros(3)
    for i in range(3):
        for x, m in zip(x0.numpy().reshape(3, -1)[i], mean[i]):
            grid = np.linspace(x - 1 / 255, x + 1 / 255, 20001)
            p = integrate.trapezoid(stats.norm.pdf(grid, m, math.sqrt(sigma2)), grid)
            want[i] -= math.log(p)
    got = l_0(s, zero, x0, x1, var_type=var_type).numpy()
    assert np.allclose(got, want, rtol=1e-7, atol=0), (got, want)


def test_fixedlarge_decoder_costs_fewer_bits_for_a_perfect_mean():
    """The released code's sigma_1 = sqrt(beta-tilde_2) = 0.0074 fits the bin half-width 1/255 better than
    sqrt(beta_1) = 0.01: for a mean at the pixel, -log2 P(bin) = -log2(2 Phi(1/(255 sigma)) - 1) per dimension."""
    s = Schedule.linear(1000)
    x0 = torch.zeros(1, 3, 4, 4, dtype=torch.float64) + 2 / 255 - 1 + 100 / 127.5
    exact = lambda x, t: (x - math.sqrt(float(s.alpha_bars[1])) * x0) / math.sqrt(1 - float(s.alpha_bars[1]))  # noqa
    bits = {
        v: bits_per_dim(l_0(s, exact, x0, x0 * math.sqrt(0.9999), var_type=v), 48).item()
        for v in ("beta", "fixedlarge")
    }
    for v, sigma2 in (("beta", 1e-4), ("fixedlarge", float(s.model_log_variance("fixedlarge")[1].exp()))):
        p = 2 * stats.norm.cdf(1 / 255 / math.sqrt(sigma2)) - 1
        assert bits[v] == pytest.approx(-math.log2(p), rel=1e-9), v
    assert bits["beta"] - bits["fixedlarge"] > 0.35, bits
