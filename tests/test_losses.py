"""Losses: the ELBO weights against the KL they replace; L_simple against its closed-form value
for Gaussian data (E||eps - eps*||^2 = alpha_bar_t when x_0 ~ N(0, 1))."""

import math

import pytest
import torch

from edudiff import (
    Schedule,
    elbo_weights,
    loss_elbo_weighted,
    loss_simple,
    normal_kl,
    p_mean_variance,
    q_posterior,
    q_sample,
    vb_terms,
)
from edudiff.toy import GaussianMixture


@pytest.mark.parametrize("var_type", ["beta", "beta_tilde"])
def test_weight_times_eps_error_equals_the_kl_between_means(var_type):
    """L_{t-1} - C_t = lambda_t ||eps - eps_theta||^2 (eq. 8-12), checked with normal_kl on the means."""
    s = Schedule.linear(1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 5, generator=g, dtype=torch.float64)
    t = torch.randint(2, 1001, (64,), generator=g)
    xt = q_sample(s, x0, t, eps=eps)
    eps_theta = eps + 0.3 * torch.randn(64, 5, generator=g, dtype=torch.float64)  # an imperfect model
    out = p_mean_variance(s, None, xt, t, var_type=var_type, eps=eps_theta)
    true_mean, _ = q_posterior(s, x0, xt, t)
    lv = out["log_variance"]
    kl_means = (normal_kl(true_mean, lv, out["mean"], lv)).sum(1)  # same variance: only the means differ
    lam = elbo_weights(s, var_type)[t]
    assert torch.allclose(kl_means, lam * ((eps - eps_theta) ** 2).sum(1), rtol=1e-8)


def test_weights_shape_and_values():
    s = Schedule.linear(1000)
    lam = elbo_weights(s)
    assert lam.shape == (1001,) and lam[0] == 0 and lam.dtype == torch.float64
    # lambda_t = beta_t / (2 alpha_t (1 - alpha_bar_t)) for sigma^2 = beta: huge at t=1, tiny at t=T
    assert lam[1].item() == pytest.approx(1e-4 / (2 * (1 - 1e-4) * 1e-4), rel=1e-9)
    assert lam[1000].item() == pytest.approx(0.02 / (2 * 0.98 * (1 - s.alpha_bars[1000].item())), rel=1e-9)


def test_expected_bound_terms_match_closed_form_for_gaussian_data():
    """x_0 ~ N(0,1) with the exact eps*: E[L_{t-1}] = lambda_t alpha_bar_t + KL(N(0, bt~) || N(0, beta_t))."""
    s = Schedule.linear(200, beta_T=0.1)
    gauss = GaussianMixture([1.0], [0.0], [1.0])
    model = gauss.optimal_eps_model(s)
    g = torch.Generator().manual_seed(0)
    n = 40000
    lam = elbo_weights(s, "beta")
    for t in (2, 30, 150):
        x0 = gauss.sample(n, generator=g)
        tt = torch.full((n,), t)
        terms = vb_terms(s, model, x0, q_sample(s, x0, tt, generator=g), tt, var_type="beta", decoder="gaussian")
        bt, b = s.posterior_variance[t].item(), s.betas[t].item()
        c_t = 0.5 * (-1 + math.log(b / bt) + bt / b)
        expected = lam[t].item() * s.alpha_bars[t].item() + c_t
        assert abs(terms.mean().item() - expected) < 5 * terms.std().item() / math.sqrt(n), t


def test_loss_simple_of_the_optimal_model_is_mean_alpha_bar_for_gaussian_data():
    s = Schedule.linear(100, beta_T=0.1)
    gauss = GaussianMixture([1.0], [0.0], [1.0])
    g = torch.Generator().manual_seed(1)
    x0 = gauss.sample(100000, generator=g)
    per_row = loss_simple(s, gauss.optimal_eps_model(s), x0, generator=g, reduction="none")
    expected = s.alpha_bars[1:].mean().item()  # Var(eps | x_t) = alpha_bar_t, t ~ U{1..T}
    assert abs(per_row.mean().item() - expected) < 5 * per_row.std().item() / math.sqrt(len(per_row))


def test_losses_are_differentiable_and_reproducible():
    s = Schedule.linear(50)
    w = torch.zeros(1, requires_grad=True)
    model = lambda x, t: w * x  # noqa: E731
    x0 = torch.randn(8, 3)
    l1 = loss_simple(s, model, x0, generator=torch.Generator().manual_seed(0))
    l2 = loss_simple(s, model, x0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(l1, l2)
    (g,) = torch.autograd.grad(l1, w)
    # d/dw mean((eps - w x_t)^2) at w=0 is -2 mean(eps x_t): recompute x_t and eps from the same seed
    gen = torch.Generator().manual_seed(0)
    t = torch.randint(1, 51, (8,), generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    xt = q_sample(s, x0, t, eps=eps)
    assert g.item() == pytest.approx((-2 * eps * xt).mean().item(), rel=1e-5)
    lw = loss_elbo_weighted(s, model, x0, t=t, eps=eps, reduction="none")
    assert lw.shape == (8,) and bool((lw > 0).all())


def test_bad_arguments():
    s = Schedule.linear(10)
    model = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ValueError, match="var_type"):
        elbo_weights(s, "learned")
    with pytest.raises(ValueError, match="reduction"):
        loss_simple(s, model, torch.zeros(2, 2), reduction="sum")
    with pytest.raises(ValueError, match="x0 contains NaN"):
        loss_simple(s, model, torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="must return eps_hat with the shape"):
        loss_simple(s, lambda x, t: x[:, :1], torch.zeros(2, 3))


# ------------------------------------------------------------------------------------------------
# Min-SNR-gamma (Hang et al. 2023), the CPU recipe's weighting
# ------------------------------------------------------------------------------------------------
def _snr_numpy(betas):
    import numpy as np

    ab = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    return ab / (1.0 - ab), ab


@pytest.mark.parametrize("gamma", [1.0, 5.0, 20.0])
def test_min_snr_is_the_papers_x0_loss(gamma):
    """Hang et al. define the weighting in x_0-space: min(SNR_t, gamma) * ||x_0 - x0_hat||^2. With
    x0_hat = (x_t - sqrt(1 - alpha_bar) eps_theta) / sqrt(alpha_bar) (alpha_bar from numpy, not from Schedule)
    that must equal loss_min_snr's weighted eps error, example by example."""
    import numpy as np

    from edudiff.losses import loss_min_snr

    s = Schedule.linear(1000)
    snr, ab = _snr_numpy(s.betas[1:].numpy())
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(32, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(32, 1, 4, 4, generator=g, dtype=torch.float64)
    t = torch.randint(1, 1001, (32,), generator=g)

    def model(x, tt):  # an imperfect, deterministic eps_theta
        return 0.5 * torch.tanh(x) + 1e-3 * tt.view(-1, 1, 1, 1).to(x.dtype)

    got = loss_min_snr(s, model, x0, t=t, eps=eps, gamma=gamma, reduction="none")
    a = torch.from_numpy(ab[t.numpy() - 1]).view(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    x0_hat = (xt - (1 - a).sqrt() * model(xt, t)) / a.sqrt()
    want = torch.from_numpy(np.minimum(snr[t.numpy() - 1], gamma)) * ((x0 - x0_hat) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(got, want, rtol=1e-7)
    # below the threshold (large t: SNR < gamma) the weight is exactly 1, i.e. L_simple
    plain = loss_simple(s, model, x0, t=t, eps=eps, reduction="none")
    low = torch.from_numpy(snr[t.numpy() - 1] <= gamma)
    assert low.any() and (~low).any()
    assert torch.equal(got[low], plain[low]) and bool((got[~low] < plain[~low]).all())


def test_min_snr_weights_table_and_errors():
    from edudiff.losses import min_snr_weights

    s = Schedule.linear(1000)
    w = min_snr_weights(s, 5.0)
    assert w.shape == (1001,) and w.dtype == torch.float64 and w[0] == 0
    snr, _ = _snr_numpy(s.betas[1:].numpy())
    assert torch.allclose(w[1:], torch.from_numpy(snr.clip(max=5.0) / snr))
    assert torch.equal(min_snr_weights(s, float("inf"))[1:], torch.ones(1000, dtype=torch.float64))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="gamma must be positive"):
            min_snr_weights(s, bad)
