"""Posterior q(x_{t-1}|x_t,x_0): against Bayes' rule on a grid and against Monte Carlo regression."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from edudiff import Schedule, posterior_mean_from_eps, predict_eps_from_x0, predict_x0_from_eps, q_posterior, q_sample


def grid_posterior(s, x0, xt, t):
    """Mean and variance of q(x_{t-1}|x_t,x_0) by Bayes' rule, normalised numerically on a fine grid."""
    b, ab_prev = s.betas[t].item(), s.alpha_bars_prev[t].item()
    prior = stats.norm(math.sqrt(ab_prev) * x0, math.sqrt(1 - ab_prev))  # q(x_{t-1}|x_0)
    center = prior.mean()
    grid = np.linspace(center - 12 * prior.std(), center + 12 * prior.std(), 200001)
    logw = prior.logpdf(grid) + stats.norm(np.sqrt(1 - b) * grid, math.sqrt(b)).logpdf(xt)  # x q(x_t|x_{t-1})
    w = np.exp(logw - logw.max())
    trap = np.trapezoid if hasattr(np, "trapezoid") else np.trapz
    z = trap(w, grid)
    mean = trap(grid * w, grid) / z
    var = trap((grid - mean) ** 2 * w, grid) / z
    return mean, var


@pytest.mark.parametrize("sched", [Schedule.linear(1000), Schedule.cosine(100)])
@pytest.mark.parametrize("t", [2, 10, 57, 100])
def test_posterior_equals_bayes_rule_on_a_grid(sched, t):
    x0 = 0.8
    xt = sched.sqrt_alpha_bars[t].item() * x0 - 0.4 * sched.sqrt_one_minus_alpha_bars[t].item()  # a typical x_t
    mean_grid, var_grid = grid_posterior(sched, x0, xt, t)
    X0, XT, T = torch.tensor([x0], dtype=torch.float64), torch.tensor([xt], dtype=torch.float64), torch.tensor([t])
    mean, var = q_posterior(sched, X0, XT, T)
    assert mean.item() == pytest.approx(mean_grid, rel=1e-6, abs=1e-8)
    assert var.item() == pytest.approx(var_grid, rel=1e-5)
    # the same mean in eps-form (eq. 11), with the eps that links x_t to x_0
    eps = (XT - sched.sqrt_alpha_bars[t] * X0) / sched.sqrt_one_minus_alpha_bars[t]
    assert posterior_mean_from_eps(sched, XT, T, eps).item() == pytest.approx(mean_grid, rel=1e-6, abs=1e-8)


def test_posterior_matches_monte_carlo_regression():
    """Draw x_{t-1} ~ q(.|x_0), x_t ~ q(.|x_{t-1}); regress x_{t-1} on x_t: slope, intercept, residual var."""
    s = Schedule.linear(1000)
    t, x0, n = 200, 1.3, 200000
    rng = np.random.default_rng(0)
    ab_prev, b = s.alpha_bars_prev[t].item(), s.betas[t].item()
    x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * rng.standard_normal(n)
    xt = math.sqrt(1 - b) * x_prev + math.sqrt(b) * rng.standard_normal(n)
    fit = stats.linregress(xt, x_prev)
    resid_var = np.var(x_prev - (fit.intercept + fit.slope * xt), ddof=2)
    assert abs(fit.slope - s.posterior_mean_coef_xt[t].item()) < 5 * fit.stderr
    assert abs(fit.intercept - s.posterior_mean_coef_x0[t].item() * x0) < 5 * fit.intercept_stderr
    # variance of a sample variance of Gaussians: 2 sigma^4 / n
    bt = s.posterior_variance[t].item()
    assert abs(resid_var - bt) < 5 * bt * math.sqrt(2 / n)


def test_posterior_at_t1_is_x0_with_no_variance():
    s = Schedule.linear(10)
    x0, xt = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    mean, var = q_posterior(s, x0, xt, torch.ones(5, dtype=torch.long))
    assert torch.allclose(mean, x0, atol=1e-12) and bool((var == 0).all())


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 1000), st.floats(-3, 3), st.floats(-3, 3))
def test_x0_eps_conversions_invert_the_jump(t, x0, eps):
    s = Schedule.linear(1000)
    X0, E, T = (
        torch.tensor([[x0]], dtype=torch.float64),
        torch.tensor([[eps]], dtype=torch.float64),
        torch.tensor([t]),
    )
    xt = q_sample(s, X0, T, eps=E)
    assert torch.allclose(predict_x0_from_eps(s, xt, T, E), X0, atol=1e-9 / s.sqrt_alpha_bars[t].item())
    assert torch.allclose(predict_eps_from_x0(s, xt, T, X0), E, atol=1e-9 / s.sqrt_one_minus_alpha_bars[t].item())


def test_bad_input():
    s = Schedule.linear(10)
    with pytest.raises(ValueError, match="x0 has shape"):
        q_posterior(s, torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="xt contains NaN"):
        q_posterior(s, torch.zeros(1), torch.tensor([float("nan")]), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"1\.\.T=10"):
        predict_x0_from_eps(s, torch.zeros(1), torch.tensor([11]), torch.zeros(1))
