"""Samplers: Algorithm 2 is exact in the two cases the paper names (sec. 3.2); DDIM with eta=1 over all
steps is Algorithm 2 with beta-tilde; deterministic DDIM carries N(0,1) to the data Gaussian."""

import math

import pytest
import torch
from scipy import stats

from edudiff import DDPMScheduler, Schedule, ddim_sample, sample
from edudiff.sampling import ddim_timesteps
from edudiff.toy import GaussianMixture


def test_ancestral_sampling_is_exact_for_standard_normal_data_with_sigma_beta():
    s = Schedule.linear(100, beta_T=0.1)
    gauss = GaussianMixture([1.0], [0.0], [1.0])
    x0 = sample(
        s, gauss.optimal_eps_model(s), (20000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    assert stats.kstest(x0.numpy(), "norm").pvalue > 1e-3


def test_ancestral_sampling_follows_the_forward_marginals_for_a_point_mass_with_beta_tilde():
    s = Schedule.linear(60, beta_T=0.2)
    c = 0.7
    point = GaussianMixture([1.0], [c], [1e-12])
    x0, traj = sample(
        s,
        point.optimal_eps_model(s),
        (5000,),
        var_type="beta_tilde",
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1),
        return_trajectory=True,
    )
    assert sorted(traj) == list(range(61))
    for t in (50, 20, 3):
        ab = s.alpha_bars[t].item()
        ref = stats.norm(math.sqrt(ab) * c, math.sqrt(1 - ab))
        assert stats.kstest(traj[t].numpy(), ref.cdf).pvalue > 1e-3, t
    assert torch.allclose(x0, torch.full_like(x0, c), atol=1e-6)


def test_ddim_with_eta_one_over_all_steps_is_algorithm_2_with_beta_tilde():
    s = Schedule.cosine(40)
    mix = GaussianMixture([0.5, 0.5], [-1.0, 1.0], [0.3, 0.2])
    model = mix.optimal_eps_model(s)
    a = sample(s, model, (256,), var_type="beta_tilde", dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    b = ddim_sample(
        s, model, (256,), ddim_steps=40, eta=1.0, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    assert torch.allclose(a, b, atol=1e-9)


def test_deterministic_ddim_maps_noise_to_the_data_gaussian():
    s = Schedule.linear(1000)
    m, sd = 0.5, 0.4
    gauss = GaussianMixture([1.0], [m], [sd])
    x0 = ddim_sample(
        s,
        gauss.optimal_eps_model(s),
        (20000,),
        ddim_steps=100,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(3),
    )
    se_mean, se_std = sd / math.sqrt(20000), sd / math.sqrt(2 * 20000)
    assert abs(x0.mean().item() - m) < 5 * se_mean + 0.01
    assert abs(x0.std().item() - sd) < 5 * se_std + 0.01
    again = ddim_sample(
        s,
        gauss.optimal_eps_model(s),
        (20000,),
        ddim_steps=100,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(3),
    )
    assert torch.equal(x0, again)


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 1) == [1]
    taus = ddim_timesteps(1000, 50)
    assert taus[0] == 1000 and taus[-1] == 1 and len(taus) == 50 and taus == sorted(taus, reverse=True)
    with pytest.raises(ValueError, match="ddim_steps"):
        ddim_timesteps(10, 11)


def test_scheduler_facade_reproduces_sample():
    s = Schedule.linear(30, beta_T=0.3)
    mix = GaussianMixture([0.5, 0.5], [-1.0, 1.0], [0.3, 0.2])
    model = mix.optimal_eps_model(s)
    ref = sample(s, model, (64,), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sched = DDPMScheduler(s)
    g = torch.Generator().manual_seed(5)
    x = torch.randn((64,), generator=g, dtype=torch.float64)
    for t in sched.timesteps:
        tt = torch.full((64,), int(t))
        x = sched.step(model(x, tt), tt, x, generator=g).prev_sample
    assert torch.allclose(x, ref, atol=1e-12)


def test_sample_restores_training_mode_and_checks_the_model():
    s = Schedule.linear(5)
    net = torch.nn.Linear(3, 3)
    net.train()
    seen = []
    model = torch.nn.Module()
    model.net = net
    model.forward = lambda x, t: (seen.append(model.training), net(x))[1]
    sample(s, model, (2, 3), generator=torch.Generator().manual_seed(0))
    assert seen and not any(seen) and model.training
    with pytest.raises(ValueError, match="shape of x_t"):
        sample(s, lambda x, t: x[:, :1], (2, 3))
    with pytest.raises(ValueError, match="var_type"):
        sample(s, lambda x, t: x, (2, 3), var_type="learned")
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(s, lambda x, t: x, (2, 3), eta=-1)


def test_respaced_schedule_keeps_the_marginals_and_the_models_timesteps():
    """respace: the short process's alpha-bar at step k is the long one's at tau_k (so q(x_k | x_0) is unchanged),
    and a model trained on the long process, called at tau_k, samples the short one: Algorithm 2 with sigma^2 = beta
    is exact for N(0, 1) data at any schedule (sec. 3.2), so 30 respaced steps of the exact eps-model of the T = 1000
    process must give N(0, 1) -- and the same 30 steps without the timestep map must not."""
    from edudiff.sampling import RespacedModel, respace

    long = Schedule.linear(1000)
    short, taus = respace(long, 30)
    assert short.T == 30 and taus[0] == 0 and taus[-1] == 1000 and taus.tolist() == sorted(taus.tolist())
    assert torch.allclose(short.alpha_bars, long.alpha_bars[taus], rtol=1e-12, atol=0)
    gauss = GaussianMixture([1.0], [0.0], [1.0])
    eps_long = gauss.optimal_eps_model(long)
    pvalues = {}
    for name, model in (("respaced", RespacedModel(eps_long, taus)), ("unmapped", eps_long)):
        x0 = sample(short, model, (20000,), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        pvalues[name] = stats.kstest(x0.numpy(), "norm").pvalue
    assert pvalues["respaced"] > 1e-3, f"the respaced sampler should draw N(0, 1): {pvalues}"
    assert pvalues["unmapped"] < 1e-6, f"calling the model at the short process's own k must be wrong: {pvalues}"
