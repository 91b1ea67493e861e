"""Tests for edudiff.nn.toy_models: the toy eps-MLP, its training loop and the Wasserstein helpers.

Independent references: scipy.stats.wasserstein_distance; the translation property of W1
(W1(x, x + c) = |c|) and of the sliced distance (2|c|/pi in 2-D, CLT tolerance over the random
directions); sin^2 + cos^2 = 1 for the embedding; the zero model's L_simple (E||eps||^2 / D = 1) and
the exact optimal model of the mixture (edudiff.toy) for the training test, with CLT margins.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import edudiff
from edudiff.nn.toy_models import (
    LearnedTimeEmbedding,
    SinusoidalTimeEmbedding,
    ToyEpsMLP,
    sliced_wasserstein,
    train_toy,
    wasserstein_1d,
)
from edudiff.toy import ring_2d, two_gaussians_1d

T = 100


@pytest.fixture(scope="module")
def schedule():
    return edudiff.Schedule(edudiff.linear_betas(T, 1e-4 * 1000 / T, 0.02 * 1000 / T))


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize("emb", ["sinusoidal", "learned"])
@pytest.mark.parametrize("shape,dim", [((7,), 1), ((7, 1), 1), ((7, 2), 2), ((7, 3), 3)])
def test_model_shapes_and_dtype(emb, shape, dim):
    m = ToyEpsMLP(dim, T, hidden=16, depth=2, time_embedding=emb, seed=0)
    t = torch.randint(1, T + 1, (7,))
    for dtype in (torch.float32, torch.float64):
        out = m(torch.randn(shape, dtype=dtype), t)
        assert out.shape == shape and out.dtype == dtype
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("emb", ["sinusoidal", "learned"])
def test_large_batch_embeds_each_step_once_with_the_same_result(emb):
    """A batch larger than T+1 takes the gather-from-a-table path; row by row it must agree with the
    small-batch path, values and gradients."""
    m = ToyEpsMLP(2, T, hidden=16, depth=3, time_embedding=emb, seed=0).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * T, 2, generator=g, dtype=torch.float64)
    t = torch.randint(1, T + 1, (3 * T,), generator=g)
    big = m(x, t)
    rows = torch.cat([m(x[i : i + 10], t[i : i + 10]) for i in range(0, 3 * T, 10)])
    torch.testing.assert_close(big, rows, rtol=1e-12, atol=1e-12)
    gb = torch.autograd.grad(big.square().sum(), list(m.parameters()), allow_unused=True)
    gr = torch.autograd.grad(
        torch.cat([m(x[i : i + 10], t[i : i + 10]) for i in range(0, 3 * T, 10)]).square().sum(),
        list(m.parameters()),
        allow_unused=True,
    )
    for a, b in zip(gb, gr):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_model_rejects_bad_input():
    m = ToyEpsMLP(2, T, hidden=8, seed=0)
    with pytest.raises(ValueError, match="x must have shape"):
        m(torch.randn(5, 3), torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D data"):
        m(torch.randn(5), torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"1\.\.T=100"):
        m(torch.randn(5, 2), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        m(torch.randn(5, 2), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="time_embedding"):
        ToyEpsMLP(1, T, time_embedding="fourier")
    with pytest.raises(ValueError, match="depth"):
        ToyEpsMLP(1, T, depth=0)
    with pytest.raises(ValueError, match="even"):
        SinusoidalTimeEmbedding(5, T)


def test_sinusoidal_embedding_unit_pairs_and_distinct():
    emb = SinusoidalTimeEmbedding(32, T)
    e = emb(torch.arange(1, T + 1))
    # each (sin, cos) pair has unit norm, so ||e(t)||^2 = dim / 2 for every t
    torch.testing.assert_close(e.pow(2).sum(1), torch.full((T,), 16.0), rtol=1e-5, atol=1e-5)
    d = torch.cdist(e, e) + torch.eye(T) * 1e9
    assert float(d.min()) > 1e-3, "two different steps got the same embedding"


def test_learned_embedding_is_a_table():
    emb = LearnedTimeEmbedding(8, T)
    t = torch.tensor([3, 3, 5])
    e = emb(t)
    assert e.shape == (3, 8) and torch.equal(e[0], e[1]) and not torch.equal(e[0], e[2])
    assert emb.table.weight.requires_grad


def test_seed_reproducible_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = ToyEpsMLP(2, T, hidden=16, seed=3)
    assert torch.equal(state, torch.random.get_rng_state()), "seeded construction changed the global RNG"
    b = ToyEpsMLP(2, T, hidden=16, seed=3)
    c = ToyEpsMLP(2, T, hidden=16, seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


# ----------------------------------------------------------------------------- training
def _held_out_loss(schedule, model, x0, t, noise):
    with torch.no_grad():
        return edudiff.loss_simple(schedule, model, x0, t=t, eps=noise, reduction="none")


def test_training_beats_zero_model_and_approaches_optimum(schedule):
    """A briefly trained MLP brings L_simple on held-out (x0, t, eps) well below the zero model's
    (whose loss is E||eps||^2/D = 1) and close to the exact optimal model's (the minimum)."""
    torch.manual_seed(0)
    mix = two_gaussians_1d()
    model = ToyEpsMLP(1, T, hidden=64, depth=3, seed=0)
    hist = train_toy(
        model, schedule, mix, loss="simple", steps=400, batch=256, lr=1e-2, generator=torch.Generator().manual_seed(0)
    )
    assert len(hist) == 400 and all(math.isfinite(v) for v in hist)
    g = torch.Generator().manual_seed(123)
    n = 20000
    x0 = mix.sample(n, g)
    t = torch.randint(1, T + 1, (n,), generator=g)
    noise = torch.randn(n, generator=g, dtype=torch.float64)
    trained = _held_out_loss(schedule, model, x0, t, noise)
    zero = _held_out_loss(schedule, lambda x, tt: torch.zeros_like(x), x0, t, noise)
    best = _held_out_loss(schedule, mix.optimal_eps_model(schedule), x0, t, noise)
    se = float((zero - trained).std()) / math.sqrt(n)
    assert float(zero.mean() - trained.mean()) > 10 * se
    assert abs(float(zero.mean()) - 1.0) < 4 / math.sqrt(n) * math.sqrt(2)  # eps^2 has variance 2
    # the optimum is a lower bound (up to paired CLT noise); the trained model is close to it
    diff = trained - best
    se_d = float(diff.std()) / math.sqrt(n)
    assert float(diff.mean()) > -4 * se_d
    assert float(diff.mean()) < 0.05, (
        f"trained L_simple {float(trained.mean()):.4f} vs optimal {float(best.mean()):.4f}"
    )


def test_training_with_elbo_loss_decreases(schedule):
    model = ToyEpsMLP(2, T, hidden=32, depth=2, seed=1)
    hist = train_toy(
        model,
        schedule,
        ring_2d(),
        loss="elbo",
        var_type="beta_tilde",
        steps=300,
        batch=128,
        lr=1e-2,
        generator=torch.Generator().manual_seed(1),
    )
    assert np.mean(hist[-50:]) < 0.8 * np.mean(hist[:50])


def test_training_is_reproducible(schedule):
    runs = []
    for _ in range(2):
        m = ToyEpsMLP(2, T, hidden=16, depth=2, time_embedding="learned", seed=5)
        h = train_toy(m, schedule, ring_2d(), steps=30, batch=32, generator=torch.Generator().manual_seed(9))
        runs.append((h, [p.detach().clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        assert torch.equal(a, b)


def test_train_toy_accepts_callable_sampler_and_validates(schedule):
    m = ToyEpsMLP(1, T, hidden=8, depth=1, seed=0)
    calls = []

    def sampler(n, generator):
        calls.append(n)
        return torch.randn(n, generator=generator)

    h = train_toy(m, schedule, sampler, steps=3, batch=5, generator=torch.Generator().manual_seed(0))
    assert calls == [5, 5, 5] and len(h) == 3
    with pytest.raises(ValueError, match="loss"):
        train_toy(m, schedule, sampler, loss="vlb", steps=1)
    with pytest.raises(ValueError, match="var_type"):
        train_toy(m, schedule, sampler, loss="elbo", var_type="learned", steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_toy(m, schedule, sampler, steps=0)
    with pytest.raises(TypeError, match="sampler"):
        train_toy(m, schedule, 3.0, steps=1)
    with pytest.raises(ValueError, match="num_threads"):
        train_toy(m, schedule, sampler, steps=1, num_threads=0)
    before = torch.get_num_threads()
    train_toy(m, schedule, sampler, steps=1, num_threads=1)
    assert torch.get_num_threads() == before, "train_toy must restore the thread count"


# ----------------------------------------------------------------------------- metrics
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_wasserstein_1d_matches_scipy(n, m, seed):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n) * rng.uniform(0.1, 3)
    v = rng.standard_t(3, size=m) + rng.normal()
    if rng.uniform() < 0.3:  # ties
        u = np.round(u, 1)
        v = np.round(v, 1)
    assert wasserstein_1d(u, v) == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-12, abs=1e-12)


def test_wasserstein_1d_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    assert wasserstein_1d(x, x + 0.7) == pytest.approx(0.7, abs=1e-12)  # translation
    y = rng.normal(size=500)
    assert wasserstein_1d(x, y) == pytest.approx(np.mean(np.abs(np.sort(x) - np.sort(y))), abs=1e-12)
    assert wasserstein_1d(torch.tensor(x), torch.tensor(y)) == pytest.approx(wasserstein_1d(y, x), abs=1e-12)
    with pytest.raises(ValueError, match="empty"):
        wasserstein_1d([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        wasserstein_1d([np.nan], [1.0])


def test_sliced_wasserstein_translation_in_2d():
    """For y = x + c every projection is shifted by <theta, c>, so SW1 = |c| mean|cos angle|,
    whose expectation over uniform directions in 2-D is 2|c|/pi; |cos| has variance 1/2 - 4/pi^2."""
    x = ring_2d().sample(300, torch.Generator().manual_seed(0))
    c = torch.tensor([0.6, -0.8], dtype=torch.float64)  # |c| = 1
    L = 4000
    sw = sliced_wasserstein(x, x + c, n_projections=L, generator=torch.Generator().manual_seed(1))
    se = math.sqrt(0.5 - 4 / math.pi**2) / math.sqrt(L)
    assert abs(sw - 2 / math.pi) < 4 * se


def test_sliced_wasserstein_1d_and_validation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=50), rng.normal(size=70)
    assert sliced_wasserstein(a, b) == pytest.approx(scipy.stats.wasserstein_distance(a, b), abs=1e-12)
    assert sliced_wasserstein(a[:, None], b[:, None]) == pytest.approx(
        scipy.stats.wasserstein_distance(a, b), abs=1e-12
    )
    x = torch.randn(20, 2)
    assert sliced_wasserstein(x, x, generator=torch.Generator().manual_seed(0)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="same d"):
        sliced_wasserstein(torch.randn(5, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(torch.randn(5, 2), torch.randn(5, 2), n_projections=0)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    y = torch.randn(30, 2)
    assert sliced_wasserstein(x, y, generator=g1) == sliced_wasserstein(x, y, generator=g2)


@pytest.mark.parametrize("dim", [2, 8, 32, 64])
def test_sinusoidal_embedding_is_the_old_toy_formula(dim):
    """SinusoidalTimeEmbedding now calls edudiff.nn.timestep_embedding; its values must stay bit-identical
    to the formula the toy models were trained with (t rescaled to 1000 t / T, frequencies 10000^(-k/half)),
    so notebook 05's thresholds hold. The old formula is written out here."""
    import math

    t = torch.arange(1, T + 1)
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.to(torch.float32) * (1000.0 / T))[:, None] * freqs[None]
    old = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    assert torch.equal(SinusoidalTimeEmbedding(dim, T)(t), old)
    old64 = torch.cat([torch.sin(a := (t.double() * (1000.0 / T))[:, None] * freqs.double()[None]), torch.cos(a)], 1)
    assert torch.equal(SinusoidalTimeEmbedding(dim, T).double()(t), old64), "a .double() model embeds in float64"
