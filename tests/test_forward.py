"""Forward process: the jump q(x_t|x_0) against chained single steps (exact recursion, moments, KS)."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from edudiff import Schedule, q_mean_var, q_sample, q_step


def test_jump_mean_and_variance_equal_the_recursion_of_single_steps():
    s = Schedule.cosine(200)
    betas = s.betas.tolist()
    x0 = torch.tensor([-1.5, 0.3, 2.0], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros(3, dtype=torch.float64)
    for t in range(1, 201):  # x_t = sqrt(1-b) x_{t-1} + sqrt(b) eps, moments step by step
        mean, var = math.sqrt(1 - betas[t]) * mean, (1 - betas[t]) * var + betas[t]
        if t in (1, 7, 100, 200):
            m, v = q_mean_var(s, x0, torch.full((3,), t))
            assert torch.allclose(m, mean, rtol=1e-12, atol=1e-14) and torch.allclose(v, var, rtol=1e-12)


def test_jump_equals_chained_steps_in_distribution():
    s = Schedule.linear(60, beta_T=0.2)
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.where(torch.rand(n, generator=g, dtype=torch.float64) < 0.3, -2.0, 1.5).double()
    x = x0.clone()
    for t in range(1, 41):
        x = q_step(s, x, torch.full((n,), t), generator=g)
    jump = q_sample(s, x0, torch.full((n,), 40), generator=g)
    assert stats.ks_2samp(x.numpy(), jump.numpy()).pvalue > 1e-3
    # moments: Var is exactly known; means differ by at most 5 standard errors
    m_exact = s.sqrt_alpha_bars[40].item() * x0.mean().item()
    se = math.sqrt(x.var().item() / n)
    assert abs(x.mean().item() - m_exact) < 5 * se and abs(jump.mean().item() - m_exact) < 5 * se


def test_q_sample_is_the_stated_normal():
    s = Schedule.linear(1000)
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((50000,), 0.7, dtype=torch.float64)
    xt = q_sample(s, x0, torch.full((50000,), 300), generator=g)
    ab = s.alpha_bars[300].item()
    res = stats.kstest(xt.numpy(), stats.norm(loc=math.sqrt(ab) * 0.7, scale=math.sqrt(1 - ab)).cdf)
    assert res.pvalue > 1e-3


def test_variance_stays_bounded_while_random_walk_grows():
    """sqrt(1-beta) keeps Var(x_t) -> 1; x_t = x_{t-1} + sqrt(beta) eps would grow without bound."""
    s = Schedule.linear(1000)
    _, v = q_mean_var(s, torch.full((1,), 10.0, dtype=torch.float64), torch.tensor([1000]))
    assert abs(v.item() - 1) < 1e-4
    assert s.betas.sum().item() > 10  # the random walk's variance at T


def test_generator_makes_results_reproducible_and_images_work():
    s = Schedule.linear(100)
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    t = torch.tensor([1, 20, 50, 100])
    a = q_sample(s, x0, t, generator=torch.Generator().manual_seed(3))
    b = q_sample(s, x0, t, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x0.shape and a.dtype == torch.float32
    assert q_sample(s, x0, 5).shape == x0.shape  # an int t is broadcast over the batch


@pytest.mark.parametrize(
    "t, err, match",
    [
        (torch.tensor([0, 1]), ValueError, r"1\.\.T=10"),
        (torch.tensor([1, 11]), ValueError, r"1\.\.T=10"),
        (torch.tensor([[1, 2]]), ValueError, r"shape \(B,\)"),
        (torch.tensor([1, 2, 3]), ValueError, "batch size 2"),
        (torch.tensor([1.0, 2.0]), TypeError, "integer timesteps"),
        ("5", TypeError, "LongTensor"),
    ],
)
def test_bad_t_is_refused_with_a_clear_message(t, err, match):
    s = Schedule.linear(10)
    with pytest.raises(err, match=match):
        q_sample(s, torch.zeros(2, 3), t)


def test_bad_data_is_refused():
    s = Schedule.linear(10)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        q_sample(s, torch.tensor([[0.0, float("nan")]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="eps has shape"):
        q_sample(s, torch.zeros(2, 3), torch.tensor([1, 2]), eps=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="x_prev contains NaN"):
        q_step(s, torch.tensor([float("inf")]), torch.tensor([1]))
    with pytest.raises(TypeError, match="x0 must be a torch.Tensor"):
        q_mean_var(s, np.zeros(3), torch.tensor([1, 1, 1]))


def test_value_checks_can_be_switched_off_for_a_block_and_come_back():
    from edudiff._validate import value_checks

    s = Schedule.linear(10)
    bad = torch.tensor([[float("nan")]])
    with value_checks(False):
        assert torch.isnan(q_sample(s, bad, torch.tensor([1]))).all()  # no read-back, no error
        with pytest.raises(ValueError, match="batch size 2"):  # shape checks still run
            q_sample(s, torch.zeros(2, 1), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="NaN"):
        q_sample(s, bad, torch.tensor([1]))
