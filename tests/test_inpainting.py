"""Inpainting (edudiff.inpainting) against the exact conditional of a 2-D Gaussian mixture: x_2 given a known x_1 is
itself a mixture, with weights pi_k proportional to w_k N(x_1; mu_k1, s_k^2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from edudiff import Schedule
from edudiff.inpainting import inpaint, repaint_schedule
from edudiff.toy import GaussianMixture

SCHED = Schedule.linear(250, 4e-4, 0.08)  # the paper's schedule at T = 250 (betas x 1000/T): 4x fewer model calls


def exact_conditional_cdf(mix: GaussianMixture, x1: float):
    log_pi = torch.log(mix.weights) - 0.5 * (x1 - mix.means[:, 0]) ** 2 / mix.stds**2
    pi, mu2, sd = torch.softmax(log_pi, 0).numpy(), mix.means[:, 1].numpy(), mix.stds.numpy()
    return lambda v: (pi * stats.norm.cdf(np.asarray(v)[..., None], mu2, sd)).sum(-1)


def run(mix, x1, n, resample_steps, seed):
    known = torch.zeros(n, 2, dtype=torch.float64)
    known[:, 0] = x1
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    out = inpaint(SCHED, mix.optimal_eps_model(SCHED), known, mask, resample_steps=resample_steps, generator=g)
    assert torch.equal(out[:, 0], known[:, 0]), "the known coordinate must come back unchanged"
    return out[:, 1].numpy()


def test_with_independent_coordinates_replacement_is_exact():
    """One Gaussian with independent coordinates: the unknown coordinate does not depend on the known one, so plain
    replacement (U = 1) samples the exact conditional N(mu_2, s^2)."""
    mix = GaussianMixture([1.0], [[0.5, -1.0]], [0.7])
    x2 = run(mix, x1=2.0, n=1500, resample_steps=1, seed=0)
    assert stats.kstest(x2, stats.norm(-1.0, 0.7).cdf).pvalue > 1e-3


def test_resampling_harmonises_what_replacement_gets_wrong():
    """Two components along the diagonal; knowing x_1 = 1 makes the upper one 98% likely. Replacement alone draws
    x_2 nearly ignoring x_1 (measured: mean 0.79 against the exact 1.93, 28% below 0 against 4%); RePaint's
    resampling moves the samples towards the exact conditional as U grows (U = 10: mean 1.77, KS D 0.04)."""
    mix = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [1.0, 1.0])
    cdf = exact_conditional_cdf(mix, 1.0)
    ks = {u: stats.kstest(run(mix, 1.0, 1000, u, seed=u), cdf).statistic for u in (1, 3, 10)}
    assert ks[1] > 0.2, f"replacement alone should be far off here: KS D {ks[1]:.3f}"
    assert ks[1] > ks[3] > ks[10], f"more resampling should come closer to the exact conditional: {ks}"
    assert ks[10] < 0.08, f"U = 10 should be close to the exact conditional: KS D {ks[10]:.3f}"


def test_bad_arguments_are_refused():
    mix = GaussianMixture([1.0], [[0.0, 0.0]], [1.0])
    model, x = mix.optimal_eps_model(SCHED), torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="mask must hold only 0"):
        inpaint(SCHED, model, x, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="does not broadcast"):
        inpaint(SCHED, model, x, torch.ones(3))
    with pytest.raises(ValueError, match="resample_steps"):
        inpaint(SCHED, model, x, torch.tensor([1.0, 0.0]), resample_steps=0)
    with pytest.raises(ValueError, match="jump_length"):
        inpaint(SCHED, model, x, torch.tensor([1.0, 0.0]), resample_steps=2, jump_length=0)
    with pytest.raises(ValueError, match="x_known"):
        inpaint(SCHED, model, torch.full((4, 2), float("nan")), torch.tensor([1.0, 0.0]))


def test_respaced_inpainting_still_reaches_the_exact_conditional():
    """steps=50 (respaced from T = 250, 5x fewer calls) with U = 10 resampling is still close to the exact
    conditional of the diagonal mixture, and plain replacement on it is still far off."""
    mix = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [1.0, 1.0])
    cdf = exact_conditional_cdf(mix, 1.0)
    known = torch.zeros(1000, 2, dtype=torch.float64)
    known[:, 0] = 1.0
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    ks = {}
    for u in (1, 10):
        g = torch.Generator().manual_seed(u)
        out = inpaint(SCHED, mix.optimal_eps_model(SCHED), known, mask, resample_steps=u, generator=g, steps=50)
        assert torch.equal(out[:, 0], known[:, 0])
        ks[u] = stats.kstest(out[:, 1].numpy(), cdf).statistic
    assert ks[1] > 0.2 and ks[10] < 0.08, f"KS D against the exact conditional, by U: {ks}"


def test_repaint_schedule_goes_down_and_jumps_back_as_the_paper_describes():
    """The hand-worked example of the docstring, and for many (T, U, j): from T to 0 by steps of -1 or jumps of +j,
    every jump point s (a multiple of j, 1 <= s <= T - j) left upwards U - 1 times, and T + (U - 1) j (#points) model
    steps in all."""
    assert repaint_schedule(6, 2, 2) == [6, 5, 4, 6, 5, 4, 3, 2, 4, 3, 2, 1, 0]
    assert repaint_schedule(5) == [5, 4, 3, 2, 1, 0]
    assert repaint_schedule(3, 3, 1) == [3, 2, 3, 2, 3, 2, 1, 2, 1, 2, 1, 0]
    for T, u, j in [(10, 1, 1), (10, 4, 1), (50, 10, 10), (37, 3, 5), (8, 2, 8), (8, 5, 9)]:
        states = repaint_schedule(T, u, j)
        moves = np.diff(states)
        assert states[0] == T and states[-1] == 0 and max(states) == T
        assert set(moves.tolist()) <= {-1, j}, (T, u, j, set(moves.tolist()))
        points = [s for s in range(1, T - j + 1) if s % j == 0]
        ups = [states[i] for i in np.flatnonzero(moves == j)]
        assert sorted(ups) == sorted(points * (u - 1)), (T, u, j)
        assert (moves == -1).sum() == T + (u - 1) * j * len(points)


def test_jumps_reach_the_exact_conditional_at_the_same_cost():
    """Resampling with jumps of j = 5 (U = 10, 50 respaced steps) also reaches the exact conditional of the diagonal
    mixture, and calls the model exactly once per downward move of its schedule."""
    mix = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [1.0, 1.0])
    eps = mix.optimal_eps_model(SCHED)
    calls = []

    def model(x, t):
        calls.append(1)
        return eps(x, t)

    known = torch.zeros(1000, 2, dtype=torch.float64)
    known[:, 0] = 1.0
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    out = inpaint(SCHED, model, known, mask, resample_steps=10, jump_length=5, generator=g, steps=50)
    assert torch.equal(out[:, 0], known[:, 0])
    assert len(calls) == int((np.diff(repaint_schedule(50, 10, 5)) == -1).sum()) == 50 + 9 * 5 * 9
    ks = stats.kstest(out[:, 1].numpy(), exact_conditional_cdf(mix, 1.0)).statistic
    assert ks < 0.08, f"U = 10 with jumps of 5 should be close to the exact conditional: KS D {ks:.3f}"


# ------------------------------------------------------------------------------------------------
# Reconstruction guidance (Ho et al. 2022, Video Diffusion Models, sec. 3.1)
# ------------------------------------------------------------------------------------------------
def test_reconstruction_guided_step_matches_the_closed_form_of_a_linear_model():
    """For 2-D Gaussian data N(0, S), the optimal eps is linear, eps = sqrt(1-ab) (ab S + (1-ab) I)^-1 x_t, so
    x0_hat = K x_t with K = sqrt(ab) S (ab S + (1-ab) I)^-1 and the gradient of |x_a - x0_hat_a|^2 with respect to
    x_t's unknown coordinate b is -2 K_ab (x_a - x0_hat_a): the guided x0_hat_b is x0_hat_b + w sqrt(ab) K_ab
    (x_a - x0_hat_a). Written out here in numpy, against the step's autograd."""
    from edudiff.inpainting import reconstruction_guided_step

    cov = np.array([[1.0, 0.8], [0.8, 1.0]])

    def model(xt, t):  # the exact eps of N(0, cov), batched over rows with the same t
        ab = SCHED.alpha_bars[t].view(-1, 1, 1)
        inv = torch.linalg.inv(ab * torch.tensor(cov) + (1 - ab) * torch.eye(2, dtype=torch.float64))
        return (1 - ab).sqrt().squeeze(-1) * (inv @ xt.unsqueeze(-1)).squeeze(-1)

    g = torch.Generator().manual_seed(0)
    xt = torch.randn(6, 2, dtype=torch.float64, generator=g)
    t = torch.tensor([1, 10, 60, 125, 200, 250])
    known = torch.randn(6, 2, dtype=torch.float64, generator=g)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for w in (0.5, 3.0):
        out = reconstruction_guided_step(SCHED, model, xt, t, known, mask, w)
        for i in range(6):
            ab = float(SCHED.alpha_bars[t[i]])
            K = ab**0.5 * cov @ np.linalg.inv(ab * cov + (1 - ab) * np.eye(2))
            x0_hat = K @ xt[i].numpy()
            b_guided = x0_hat[1] + w * ab**0.5 * K[0, 1] * (known[i, 0].item() - x0_hat[0])
            np.testing.assert_allclose(out["pred_x0"][i].numpy(), [x0_hat[0], b_guided], rtol=1e-10, atol=1e-12)
            # the mean is the posterior mean (eq. 7) given the guided x0, the variance beta_t
            c0, ct = float(SCHED.posterior_mean_coef_x0[t[i]]), float(SCHED.posterior_mean_coef_xt[t[i]])
            np.testing.assert_allclose(out["mean"][i, 1].item(), c0 * b_guided + ct * xt[i, 1].item(), rtol=1e-10)
            assert abs(out["variance"][i].flatten()[0].item() - float(SCHED.betas[t[i]])) < 1e-15


def run_guided(mix, x1, n, w, seed, resample_steps=1, particles=1):
    known = torch.zeros(n, 2, dtype=torch.float64)
    known[:, 0] = x1
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    out = inpaint(SCHED, mix.optimal_eps_model(SCHED), known, mask, resample_steps=resample_steps, generator=g,
                  reconstruction_weight=w, particles=particles)  # fmt: skip
    assert out.shape == known.shape, "one completion per input"
    assert torch.equal(out[:, 0], known[:, 0]), "the known coordinate must come back unchanged"
    return out[:, 1].numpy()


def test_reconstruction_guidance_reaches_the_exact_conditional_without_resampling():
    """The mixture of test_resampling_harmonises...: without resampling, replacement alone is far off (KS D > 0.2);
    reconstruction guidance of weight 4 comes as close as U = 10 resampling for about a fifth of its network time
    (measured: D 0.034, mean 1.88 against the exact 1.93); w_r = 1, the Gaussian approximation taken at its word, is
    not enough here (D 0.19), and w_r = 8 overshoots: fewer samples below 0 than the exact 4% (measured 0.1%)."""
    mix = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [1.0, 1.0])
    cdf = exact_conditional_cdf(mix, 1.0)
    below = float(cdf(0.0))
    samples = {w: run_guided(mix, 1.0, 1000, w, seed=1) for w in (0.0, 1.0, 4.0, 8.0)}
    ks = {w: stats.kstest(x2, cdf).statistic for w, x2 in samples.items()}
    assert ks[0.0] > 0.2 and ks[1.0] > 0.1, f"replacement alone (and w_r = 1) should be far off here: {ks}"
    assert ks[4.0] < 0.07, f"w_r = 4 should be close to the exact conditional: KS D {ks[4.0]:.3f}"
    means = [samples[w].mean() for w in (0.0, 1.0, 4.0, 8.0)]
    assert means == sorted(means), f"a larger weight should pull x_2 further towards the likely component: {means}"
    share = (samples[8.0] < 0).mean()
    assert share < below - 3 * (below * (1 - below) / 1000) ** 0.5, f"w_r = 8 should overshoot: {share} vs {below:.3f}"


def test_reconstruction_weight_zero_is_plain_inpainting_and_bad_weights_are_refused():
    mix = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [1.0, 1.0])
    model, x = mix.optimal_eps_model(SCHED), torch.zeros(8, 2, dtype=torch.float64)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    a = inpaint(SCHED, model, x, mask, generator=torch.Generator().manual_seed(3))
    b = inpaint(SCHED, model, x, mask, generator=torch.Generator().manual_seed(3), reconstruction_weight=0)
    assert torch.equal(a, b)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="reconstruction_weight must be a finite number >= 0"):
            inpaint(SCHED, model, x, mask, reconstruction_weight=bad)
    with pytest.raises(TypeError, match="reconstruction_weight must be a number"):
        inpaint(SCHED, model, x, mask, reconstruction_weight=True)
    with pytest.raises(ValueError, match="returned a tensor without a gradient"):
        inpaint(SCHED, lambda xt, t: model(xt.detach(), t), x, mask, reconstruction_weight=2.0)


def test_particles_reach_the_exact_conditional_without_resampling():
    """The mixture of test_resampling_harmonises...: replacement alone is far off; K chains per input that share one
    noisy path of the known coordinate, weighed by the model's density of it (SMCDiff), come closer as K grows
    (measured at n = 1000: K = 1 / 4 / 16 KS D 0.269 / 0.070 / 0.023, four other seeds 0.27-0.30 / 0.06-0.10 /
    0.02-0.04; K = 4 with w_r = 4 proposals 0.050). Seen to fail when every input's weights were reset whenever any
    input was resampled (K = 16: D 0.28)."""
    mix = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [1.0, 1.0])
    cdf = exact_conditional_cdf(mix, 1.0)
    ks = {k: stats.kstest(run_guided(mix, 1.0, 1000, 0.0, seed=k, particles=k), cdf).statistic for k in (1, 4, 16)}
    assert ks[1] > 0.2, f"one chain is plain replacement, far off here: KS D {ks[1]:.3f}"
    assert ks[1] > ks[4] > ks[16], f"more particles should come closer to the exact conditional: {ks}"
    assert ks[16] < 0.07, f"16 particles should be close to the exact conditional: KS D {ks[16]:.3f}"
    guided = stats.kstest(run_guided(mix, 1.0, 1000, 4.0, seed=5, particles=4), cdf).statistic
    assert guided < 0.07, f"4 particles with w_r = 4 proposals should be close: KS D {guided:.3f}"


def test_one_particle_is_plain_inpainting_and_bad_particle_settings_are_refused():
    mix = GaussianMixture([0.5, 0.5], [[-2.0, -2.0], [2.0, 2.0]], [1.0, 1.0])
    model, x = mix.optimal_eps_model(SCHED), torch.zeros(8, 2, dtype=torch.float64)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    a = inpaint(SCHED, model, x, mask, generator=torch.Generator().manual_seed(3))
    b = inpaint(SCHED, model, x, mask, generator=torch.Generator().manual_seed(3), particles=1)
    assert torch.equal(a, b)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="particles must be a positive int"):
            inpaint(SCHED, model, x, mask, particles=bad)
    with pytest.raises(ValueError, match="use particles with resample_steps=1 and jump_length=1"):
        inpaint(SCHED, model, x, mask, particles=4, resample_steps=2)
