"""Classifier-free guidance (edudiff.guidance) and the samplers' labels=/guidance_scale=, checked against the
exact scores of a Gaussian mixture whose components are the classes, autograd, and plain conditional sampling."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from edudiff import Schedule, ddim_sample, sample
from edudiff.guidance import ClassifierFreeGuidance, cfg_eps, guided_model
from edudiff.nn import UNet, mnist_tiny
from edudiff.sampling import DDPMScheduler
from edudiff.toy import GaussianMixture, two_gaussians_1d

SCHED = Schedule.linear(1000)
MIX = two_gaussians_1d()  # classes: 0 = N(-2, 0.5^2) with weight 0.3, 1 = N(1.5, 0.3^2) with weight 0.7


def log_class_posterior_autograd(x: torch.Tensor, t: int, y: int) -> torch.Tensor:
    """log p(y | x_t) from the marginal densities written out here (Bayes' rule), for autograd."""
    ab = float(SCHED.alpha_bars[t])
    means, var = math.sqrt(ab) * MIX.means[:, 0], ab * MIX.stds**2 + (1 - ab)
    log_joint = MIX.weights.log() - 0.5 * torch.log(2 * math.pi * var) - 0.5 * (x[:, None] - means) ** 2 / var
    return log_joint[:, y] - torch.logsumexp(log_joint, dim=1)


@pytest.mark.parametrize("t", [1, 100, 500, 900])
@pytest.mark.parametrize("y", [0, 1])
def test_class_score_is_the_autograd_gradient_of_log_p_y_given_xt(t, y):
    x = torch.linspace(-4, 4, 41, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_class_posterior_autograd(x, t, y).sum(), x)
    assert torch.allclose(MIX.class_score(SCHED, x.detach(), t, y), grad, atol=1e-9, rtol=1e-7)
    # Bayes: grad log p(x_t | y) = grad log p(x_t) + grad log p(y | x_t)
    lhs = MIX.component(y).score(SCHED, x.detach(), t)
    assert torch.allclose(lhs, MIX.score(SCHED, x.detach(), t) + grad, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("s", [0.0, 1.0, 2.0, 4.0])
def test_guided_eps_is_the_eps_of_the_score_plus_s_times_the_classifier_gradient(s):
    # eps = -sqrt(1 - ab) * score, so guidance adds s * grad log p(y|x_t) to the unconditional score.
    t, y = 300, 0
    x = torch.linspace(-3, 3, 25, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_class_posterior_autograd(x, t, y).sum(), x)
    x = x.detach()
    expected = -math.sqrt(1 - float(SCHED.alpha_bars[t])) * (MIX.score(SCHED, x, t) + s * grad)
    tt = torch.full((x.shape[0],), t)
    got = ClassifierFreeGuidance(MIX.conditional_eps_model(SCHED), y, s)(x, tt)
    assert torch.allclose(got, expected, atol=1e-8), float((got - expected).abs().max())


def test_cfg_eps_interpolates_and_extrapolates_as_ho_and_salimans_write_it():
    eps_c, eps_u = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    assert torch.equal(cfg_eps(eps_c, eps_u, 1.0), eps_c) and torch.equal(cfg_eps(eps_c, eps_u, 0.0), eps_u)
    w = 2.0  # Ho & Salimans eq. 6: (1 + w) eps_c - w eps_u is s = 1 + w here
    assert torch.allclose(cfg_eps(eps_c, eps_u, 1 + w), (1 + w) * eps_c - w * eps_u)
    with pytest.raises(ValueError, match="same shape"):
        cfg_eps(eps_c, eps_u[:1], 2.0)


class CountingModel(torch.nn.Module):
    """A class-conditional UNet that records the batch size of every call."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = UNet(mnist_tiny(num_classes=10, zero_init=False))
        self.config, self.null_label, self.calls = self.net.config, 10, []

    def forward(self, x, t, y=None):
        self.calls.append(x.shape[0])
        return self.net(x, t, y)


def test_scale_one_is_plain_conditional_sampling_in_one_call_and_scale_above_one_in_one_doubled_call():
    model = CountingModel()
    y = torch.tensor([3, 7])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    guided = ddim_sample(SCHED, model, (2, 1, 28, 28), ddim_steps=5, generator=g1, labels=y, guidance_scale=1.0)
    assert model.calls == [2] * 5, model.calls
    plain = ddim_sample(SCHED, lambda x, t: model(x, t, y=y), (2, 1, 28, 28), ddim_steps=5, generator=g2)
    assert torch.equal(guided, plain)
    model.calls.clear()
    ddim_sample(SCHED, model, (2, 1, 28, 28), ddim_steps=5, labels=y, guidance_scale=3.0)
    assert model.calls == [4] * 5, "s > 1: one batched call of twice the batch per step"


def test_no_labels_is_unconditional_sampling_with_the_null_label():
    model = CountingModel().eval()
    null = torch.full((3,), 10)
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    a = sample(Schedule.linear(20), model, (3, 1, 28, 28), generator=g1)
    b = sample(Schedule.linear(20), lambda x, t: model(x, t, y=null), (3, 1, 28, 28), generator=g2)
    assert torch.equal(a, b)
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([5, 6, 7])
    with torch.no_grad():
        assert not torch.allclose(model(x, t, torch.tensor([1, 2, 3])), model(x, t)), "labels must change eps"


@pytest.mark.parametrize("y", [0, 1])
def test_exact_conditional_sampling_draws_the_class(y):
    """Algorithm 2 with the exact class-conditional eps and s = 1 samples p(x_0 | y) (KS test against the
    component); s = 0 samples the whole mixture."""
    model = MIX.conditional_eps_model(SCHED)
    g = torch.Generator().manual_seed(10 + y)
    x = sample(SCHED, model, (3000,), generator=g, dtype=torch.float64, labels=y, guidance_scale=1.0)
    comp = MIX.component(y)
    ref = stats.norm(float(comp.means[0, 0]), float(comp.stds[0]))
    assert stats.kstest(x.numpy(), ref.cdf).pvalue > 1e-3
    x0 = sample(SCHED, model, (3000,), generator=g, dtype=torch.float64, labels=y, guidance_scale=0.0)

    def mix_cdf(v):
        parts = zip(MIX.weights, MIX.means[:, 0], MIX.stds)
        return sum(float(w) * stats.norm(float(m), float(s)).cdf(v) for w, m, s in parts)

    assert stats.kstest(x0.numpy(), mix_cdf).pvalue > 1e-3


def test_strong_guidance_concentrates_on_the_class_and_shrinks_its_spread():
    # A mixture whose classes overlap: guidance pushes samples away from the other class.
    mix = GaussianMixture([0.5, 0.5], [-1.0, 1.0], [1.0, 1.0])
    model = mix.conditional_eps_model(SCHED)
    g = torch.Generator().manual_seed(3)
    plain = sample(SCHED, model, (2000,), generator=g, dtype=torch.float64, labels=1, guidance_scale=1.0)
    strong = sample(SCHED, model, (2000,), generator=g, dtype=torch.float64, labels=1, guidance_scale=4.0)
    assert float((strong < 0).double().mean()) < float((plain < 0).double().mean()) - 0.05
    assert float(strong.mean()) > float(plain.mean()) + 0.2


def test_scheduler_model_output_is_the_guided_eps():
    model = CountingModel().eval()
    sched = DDPMScheduler(SCHED)
    x, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 4])
    with torch.no_grad():
        out = sched.model_output(model, x, 500, labels=y, guidance_scale=2.5)
        t = torch.full((2,), 500)
        expected = cfg_eps(model(x, t, y), model(x, t, None), 2.5)
    assert torch.allclose(out, expected, atol=1e-5)


def test_bad_guidance_requests_are_refused_naming_the_argument():
    uncond = UNet(mnist_tiny())
    with pytest.raises(ValueError, match="unconditional model"):
        guided_model(uncond, labels=torch.tensor([1]))
    with pytest.raises(ValueError, match="guidance_scale=2.0 needs labels"):
        guided_model(CountingModel(), labels=None, guidance_scale=2.0)
    with pytest.raises(ValueError, match="guidance_scale must be a finite number >= 0"):
        guided_model(CountingModel(), labels=1, guidance_scale=-1.0)
    with pytest.raises(TypeError, match="guidance_scale must be a number"):
        guided_model(CountingModel(), labels=1, guidance_scale="2")
    with pytest.raises(ValueError, match="labels must have shape"):
        ddim_sample(SCHED, CountingModel(), (2, 1, 28, 28), ddim_steps=2, labels=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unconditional model"):
        sample(Schedule.linear(5), uncond, (1, 1, 28, 28), labels=3)


# ------------------------------------------------------------------------------------------------
# Classifier guidance: the same hook, an explicit classifier of noisy data
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [0.0, 1.0, 2.5])
def test_classifier_guidance_with_the_exact_classifier_equals_classifier_free_guidance(s):
    """Two routes to the same scaled score: the unconditional exact eps steered by the exact p(y | x_t) (autograd
    through the classifier) and classifier-free guidance on the exact class-conditional eps."""
    t = torch.tensor([5, 200, 200, 700, 999])
    x = torch.tensor([-2.5, -0.3, 0.4, 1.0, 2.0], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1, 0])
    cg = guided_model(MIX.optimal_eps_model(SCHED), y, s, classifier=MIX.noisy_classifier(SCHED), schedule=SCHED)
    cfg = guided_model(MIX.conditional_eps_model(SCHED), y, s)
    assert torch.allclose(cg(x, t), cfg(x, t), atol=1e-9), (cg(x, t), cfg(x, t))


def test_noisy_classifier_is_the_class_posterior_and_its_gradient_is_the_class_score():
    t = torch.full((41,), 250)
    x = torch.linspace(-3, 3, 41, dtype=torch.float64, requires_grad=True)
    log_p = MIX.noisy_classifier(SCHED)(x, t)
    assert torch.allclose(log_p.exp(), MIX.class_posterior(SCHED, x.detach(), 250), atol=1e-12)
    (grad,) = torch.autograd.grad(log_p[:, 1].sum(), x)
    assert torch.allclose(grad, MIX.class_score(SCHED, x.detach(), 250, 1), atol=1e-9)


def test_classifier_guided_sampling_runs_in_both_samplers_and_is_refused_without_what_it_needs():
    model, clf = MIX.optimal_eps_model(SCHED), MIX.noisy_classifier(SCHED)
    g = torch.Generator().manual_seed(4)
    plain = ddim_sample(SCHED, model, (500,), ddim_steps=50, generator=g, dtype=torch.float64)
    guided = ddim_sample(SCHED, model, (500,), ddim_steps=50, generator=g, dtype=torch.float64, labels=0,
                         guidance_scale=3.0, classifier=clf)  # fmt: skip
    assert float((plain < 0).double().mean()) < 0.45 and float((guided < 0).double().mean()) > 0.98
    x = sample(Schedule.linear(50), model, (10,), labels=1, guidance_scale=2.0, classifier=clf, dtype=torch.float64)
    assert x.shape == (10,) and bool(torch.isfinite(x).all())
    with pytest.raises(ValueError, match="classifier guidance needs labels"):
        guided_model(model, None, 2.0, classifier=clf, schedule=SCHED)
    with pytest.raises(ValueError, match="needs the schedule"):
        guided_model(model, 0, 2.0, classifier=clf)


# ------------------------------------------------------------------------------------------------
# Guidance in a limited interval (Kynkaanniemi et al. 2024)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1, 200, 201, 500, 501, 900])
def test_interval_guides_inside_and_gives_the_conditional_score_outside(t):
    """For t_lo < t <= t_hi the eps is the eps of score + s * grad log p(y|x_t); outside it is the eps of the
    conditional score (s = 1), both from autograd of the mixture's densities written out in this file."""
    s, y, interval = 3.0, 1, (200, 500)
    x = torch.linspace(-3, 3, 25, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(log_class_posterior_autograd(x, t, y).sum(), x)
    x = x.detach()
    inside = 200 < t <= 500
    expected = -math.sqrt(1 - float(SCHED.alpha_bars[t])) * (MIX.score(SCHED, x, t) + (s if inside else 1.0) * grad)
    tt = torch.full((x.shape[0],), t)
    got = guided_model(MIX.conditional_eps_model(SCHED), y, s, guidance_interval=interval)(x, tt)
    assert torch.allclose(got, expected, atol=1e-8), float((got - expected).abs().max())
    # Classifier guidance: outside the interval the unconditional model's own eps (no classifier term).
    cg = guided_model(MIX.optimal_eps_model(SCHED), y, s, classifier=MIX.noisy_classifier(SCHED), schedule=SCHED,
                      guidance_interval=interval)  # fmt: skip
    uncond = -math.sqrt(1 - float(SCHED.alpha_bars[t])) * MIX.score(SCHED, x, t)
    assert torch.allclose(cg(x, tt), expected if inside else uncond, atol=1e-8)


def test_interval_rows_with_different_t_are_each_guided_or_not():
    t = torch.tensor([100, 300, 300, 700, 999])
    x = torch.tensor([-2.5, -0.3, 0.4, 1.0, 2.0], dtype=torch.float64)
    model = MIX.conditional_eps_model(SCHED)
    got = guided_model(model, 0, 2.5, guidance_interval=(200, 800))(x, t)
    guided, cond = guided_model(model, 0, 2.5)(x, t), guided_model(model, 0, 1.0)(x, t)
    inside = torch.tensor([False, True, True, True, False])
    assert torch.equal(got, torch.where(inside, guided, cond)) and not torch.allclose(guided, cond)


def test_interval_costs_one_call_outside_and_a_doubled_call_inside_and_the_full_interval_changes_nothing():
    from edudiff.sampling import ddim_timesteps

    model, y = CountingModel(), torch.tensor([3, 7])
    taus = ddim_timesteps(SCHED.T, 6)
    ddim_sample(SCHED, model, (2, 1, 28, 28), ddim_steps=6, labels=y, guidance_scale=3.0, guidance_interval=(0, 500))
    assert model.calls == [4 if tau <= 500 else 2 for tau in taus], (model.calls, taus)
    assert 2 in model.calls and 4 in model.calls
    runs = {}
    for key, interval, s in [("none", None, 3.0), ("full", (0, 1000), 3.0), ("empty", (1, 2), 3.0), ("s1", None, 1.0)]:
        g = torch.Generator().manual_seed(5)
        runs[key] = ddim_sample(SCHED, model, (2, 1, 28, 28), ddim_steps=6, generator=g, labels=y, guidance_scale=s,
                                guidance_interval=interval)  # fmt: skip
    assert torch.equal(runs["none"], runs["full"]), "the interval (0, T] guides every step"
    assert torch.equal(runs["empty"], runs["s1"]), "an interval that holds no visited step is plain conditional"
    assert not torch.equal(runs["none"], runs["s1"])


def test_interval_with_the_scheduler_and_algorithm_2():
    model = CountingModel().eval()
    x, y = torch.randn(2, 1, 28, 28), torch.tensor([1, 4])
    sched = DDPMScheduler(SCHED)
    with torch.no_grad():
        outside = sched.model_output(model, x, 600, labels=y, guidance_scale=2.5, guidance_interval=(0, 500))
        assert torch.equal(outside, model(x, torch.full((2,), 600), y))
        inside = sched.model_output(model, x, 500, labels=y, guidance_scale=2.5, guidance_interval=(0, 500))
        assert torch.allclose(inside, sched.model_output(model, x, 500, labels=y, guidance_scale=2.5), atol=1e-6)
    model.calls.clear()
    sample(Schedule.linear(10), model, (2, 1, 28, 28), labels=y, guidance_scale=2.0, guidance_interval=(3, 7))
    assert model.calls == [2, 2, 2, 4, 4, 4, 4, 2, 2, 2], "t = 10..1: guided for t = 7, 6, 5, 4"


@pytest.mark.parametrize(
    "interval, err, match",
    [
        ((500, 200), ValueError, r"0 <= t_lo < t_hi <= T = 1000"),
        ((0, 1001), ValueError, r"got \(0, 1001\)"),
        ((-1, 10), ValueError, "guidance_interval must be a pair"),
        ((0.5, 10), TypeError, "not two ints"),
        ("0,5", ValueError, "guidance_interval must be a pair"),
        (500, ValueError, "guidance_interval must be a pair"),
    ],
)
def test_bad_guidance_intervals_are_refused_naming_the_argument(interval, err, match):
    with pytest.raises(err, match=match):
        ddim_sample(SCHED, CountingModel(), (1, 1, 28, 28), ddim_steps=2, labels=1, guidance_scale=2.0,
                    guidance_interval=interval)  # fmt: skip


def test_a_guidance_interval_without_labels_is_refused():
    with pytest.raises(ValueError, match=r"guidance_interval=\(0, 500\) needs labels"):
        guided_model(CountingModel(), labels=None, guidance_interval=(0, 500))
