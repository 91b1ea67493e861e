"""Schedules: checked against the papers' definitions computed independently (log-space sums, direct formulas)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edudiff import Schedule, cosine_betas, linear_betas


def test_linear_betas_match_paper():
    b = linear_betas(1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4, abs=0) and b[-1].item() == pytest.approx(0.02, abs=0)
    assert np.allclose(np.diff(b.numpy()), (0.02 - 1e-4) / 999, rtol=0, atol=1e-15)


def test_alpha_bar_T_of_linear_schedule_equals_log_space_product():
    s = Schedule.linear(1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    expected = math.exp(math.fsum(math.log1p(-b) for b in betas))  # independent: log-space, exact summation
    assert s.alpha_bars[-1].item() == pytest.approx(expected, rel=1e-12)
    assert 3.9e-5 < expected < 4.2e-5  # the well-known alpha_bar_T ~ 4.0e-5 of DDPM's schedule


def test_tables_follow_the_convention():
    s = Schedule.linear(10)
    for name in (
        "betas",
        "alphas",
        "sqrt_alphas",
        "sqrt_betas",
        "alpha_bars",
        "alpha_bars_prev",
        "posterior_variance",
        "posterior_log_variance_clipped",
        "posterior_mean_coef_x0",
        "posterior_mean_coef_xt",
        "snr",
    ):
        table = getattr(s, name)
        assert table.shape == (11,) and table.dtype == torch.float64, name
    assert s.betas[0] == 0 and s.alpha_bars[0] == 1 and s.alpha_bars_prev[1] == 1
    assert torch.isinf(s.snr[0]) and bool((s.snr[1:-1] > s.snr[2:]).all())
    assert torch.equal(s.timesteps, torch.arange(1, 11))


@pytest.mark.parametrize("T", [50, 1000, 4000])
def test_cosine_betas_reproduce_target_alpha_bar_where_not_clipped(T):
    s_off = 0.008
    betas = cosine_betas(T)
    ab = Schedule(betas).alpha_bars.numpy()
    t = np.arange(T + 1)
    f = np.cos((t / T + s_off) / (1 + s_off) * np.pi / 2) ** 2  # Nichol & Dhariwal eq. 17, written out here
    target = f / f[0]
    clipped = np.nonzero(betas.numpy() >= 0.999)[0]
    last_ok = clipped[0] if len(clipped) else T  # steps 1..last_ok are before any clipping
    assert np.max(np.abs(ab[: last_ok + 1] - target[: last_ok + 1])) < 1e-12
    assert len(clipped) <= 1  # only the singular last step gets clipped


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(2, 40), elements=st.floats(1e-6, 0.999, allow_nan=False)))
def test_schedule_properties(betas):
    s = Schedule(betas)
    ab = s.alpha_bars
    assert bool((ab[1:] < ab[:-1]).all()) and bool((ab > 0).all())
    # beta-tilde_t <= beta_t: conditioning on x_0 can only shrink the variance
    assert bool((s.posterior_variance[1:] <= s.betas[1:] * (1 + 1e-12)).all())
    # posterior mean of a point that is already "on the path": x_t = sqrt(ab_t) x0 (no noise)
    # must map to x_{t-1} = sqrt(ab_{t-1}) x0  (both coefficients together, a consistency property)
    lhs = s.posterior_mean_coef_x0[1:] + s.posterior_mean_coef_xt[1:] * s.sqrt_alpha_bars[1:]
    assert torch.allclose(lhs, s.alpha_bars_prev[1:].sqrt(), rtol=1e-9, atol=1e-12)


def test_gather_broadcasts_and_casts():
    s = Schedule.linear(100)
    x = torch.zeros(3, 1, 4, 4, dtype=torch.float32)
    g = s.gather("alpha_bars", torch.tensor([1, 50, 100]), x)
    assert g.shape == (3, 1, 1, 1) and g.dtype == torch.float32
    assert g[2].item() == pytest.approx(s.alpha_bars[100].item(), rel=1e-6)


@pytest.mark.parametrize(
    "betas, match",
    [
        ([[0.1, 0.2]], "1-D"),
        ([], "empty"),
        ([0.1, 0.0], r"beta_2 = 0\.0"),
        ([0.1, 1.0], r"beta_2 = 1\.0"),
        ([-0.1], r"beta_1"),
        ([0.1, float("nan")], "NaN"),
    ],
)
def test_bad_betas_are_refused(betas, match):
    with pytest.raises(ValueError, match=match):
        Schedule(torch.tensor(betas, dtype=torch.float64))


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="T must be >= 1"):
        linear_betas(0)
    with pytest.raises(TypeError, match="T must be a positive int"):
        cosine_betas(10.5)
    with pytest.raises(ValueError, match="beta_T"):
        linear_betas(10, 1e-4, 1.5)
    with pytest.raises(TypeError, match="betas"):
        Schedule("not betas")


def test_model_log_variance_per_var_type_from_the_betas_by_hand():
    """sigma_t^2 tables written out from the betas with plain floats: beta_t; the released code's
    'fixedlarge' (sigma_1^2 = beta-tilde_2); beta-tilde_t with t = 1 clipped to beta-tilde_2."""
    betas = [0.01, 0.05, 0.2, 0.4]
    s = Schedule(betas)
    ab, prod = [1.0], 1.0
    for b in betas:
        prod *= 1 - b
        ab.append(prod)
    bt = [None] + [betas[t - 1] * (1 - ab[t - 1]) / (1 - ab[t]) for t in range(1, 5)]
    want = {
        "beta": [betas[0]] + betas,
        "fixedlarge": [bt[2], bt[2]] + betas[1:],
        "beta_tilde": [bt[2], bt[2]] + bt[2:],
        "fixedsmall": [bt[2], bt[2]] + bt[2:],
    }
    for var_type, table in want.items():
        got = s.model_log_variance(var_type)
        assert got.dtype == torch.float64 and got.shape == (5,)
        assert np.allclose(got.exp().numpy(), table, rtol=1e-12, atol=0), var_type
    assert math.isclose(math.exp(float(Schedule([0.3]).model_log_variance("fixedlarge")[1])), 0.3)  # T = 1
    with pytest.raises(ValueError, match="var_type must be one of 'beta', 'fixedlarge'"):
        s.model_log_variance("large")
