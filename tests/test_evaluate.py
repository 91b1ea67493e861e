"""Tests for edudiff.images.evaluate.

* Fréchet distance: against closed forms (1-D, diagonal, and the symmetric form
  tr((S1^1/2 S2 S1^1/2)^1/2) computed by eigendecomposition), and on samples from known Gaussians
  with a tolerance from the spread of independent replicates (CLT).
* Bits/dim of the trivial model eps = 0: against an independent computation of the expected bound
  (closed-form Gaussian expectations with numpy for L_T and L_{t-1}; Gauss-Hermite quadrature with
  scipy.stats.norm for the discretized decoder L_0), for the exact sum and for the sampled estimates.
* The MNIST classifier: accuracy above 90% after a tiny training on a subset, caching, and the
  sample-quality report on real and noise images.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from edudiff import Schedule
from edudiff.images.evaluate import (
    MNISTClassifier,
    check_8bit,
    classifier_accuracy,
    classifier_outputs,
    format_quality,
    frechet_distance,
    frechet_distance_features,
    load_or_train_classifier,
    mnist_sample_quality,
    nll_bits_per_dim,
    sample_quality,
    train_classifier,
    zero_eps_model,
)

REPO = Path(__file__).resolve().parent.parent
from dataset_paths import DATA, needs_mnist


# ------------------------------------------------------------------------------------------------
# Fréchet distance
# ------------------------------------------------------------------------------------------------
def _w2_symmetric(mu1, s1, mu2, s2) -> float:
    """Closed form via tr((S1^1/2 S2 S1^1/2)^1/2), with both square roots from numpy's eigh
    (no scipy.linalg.sqrtm, no product S1 S2)."""

    def psd_sqrt(a):
        w, v = np.linalg.eigh(a)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T

    r1 = psd_sqrt(s1)
    cross = np.trace(psd_sqrt(r1 @ s2 @ r1))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)


def test_frechet_closed_forms():
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    assert frechet_distance([0.5], [[4.0]], [-1.0], [[0.25]]) == pytest.approx(1.5**2 + (2 - 0.5) ** 2, rel=1e-12)
    # diagonal: sum (sqrt a - sqrt b)^2
    a, b = np.array([1.0, 2.0, 9.0]), np.array([4.0, 0.5, 1.0])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # general (non-commuting) covariances
    rng = np.random.default_rng(0)
    for _ in range(5):
        A, B = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
        s1, s2 = A @ A.T + 0.1 * np.eye(4), B @ B.T + 0.1 * np.eye(4)
        mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
        want = _w2_symmetric(mu1, s1, mu2, s2)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8, abs=1e-9)
        assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(want, rel=1e-8, abs=1e-9)


def test_frechet_of_a_set_with_itself_is_zero():
    f = torch.from_numpy(np.random.default_rng(1).normal(size=(500, 8)) @ np.diag(np.arange(1.0, 9.0)))
    assert abs(frechet_distance_features(f, f)) < 1e-8
    # rank-deficient covariances (fewer samples than dimensions) still give a finite, ~0 distance
    # (the square root of a singular matrix is accurate to ~sqrt(machine eps) relative to its scale)
    g = f[:5]
    scale = float(np.trace(np.cov(g.numpy(), rowvar=False)))
    assert abs(frechet_distance_features(g, g)) < 1e-6 * scale


def test_frechet_from_samples_matches_the_gaussians():
    """FD of features sampled from two known Gaussians converges to the closed form; the tolerance is
    4 standard errors of the mean of R independent replicates (plus the O(d/N) bias, which is 100x smaller)."""
    rng = np.random.default_rng(2)
    d, N, R = 3, 4000, 12
    mu1, mu2 = np.array([0.0, 0.5, -0.5]), np.array([0.3, 0.0, 0.0])
    L1, L2 = np.array([[1.0, 0, 0], [0.5, 1.0, 0], [0.2, -0.3, 0.7]]), np.array([[0.8, 0, 0], [0, 1.2, 0], [0.4, 0, 1]])
    s1, s2 = L1 @ L1.T, L2 @ L2.T
    truth = _w2_symmetric(mu1, s1, mu2, s2)
    est = np.array(
        [
            frechet_distance_features(rng.normal(size=(N, d)) @ L1.T + mu1, rng.normal(size=(N, d)) @ L2.T + mu2)
            for _ in range(R)
        ]
    )
    se = est.std(ddof=1) / math.sqrt(R)
    bias_bound = (np.trace(s1) + np.trace(s2)) / N
    assert abs(est.mean() - truth) < 4 * se + bias_bound, f"FD {est.mean():.4f} +- {se:.4f} vs closed form {truth:.4f}"


def test_frechet_errors():
    with pytest.raises(ValueError, match="shapes do not fit"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance_features(torch.zeros(1, 4), torch.zeros(3, 4))


# ------------------------------------------------------------------------------------------------
# Bits per dimension of the trivial model eps = 0, computed independently
# ------------------------------------------------------------------------------------------------
def _expected_bound_zero_model(x0: np.ndarray, T: int, var_type: str = "beta") -> tuple[float, float, float]:
    """E_q[L_T], E_q[L_0] and sum_{t>=2} E_q[L_{t-1}] in nats (summed over the pixels of x0) for
    eps_theta = 0, sigma_t^2 = beta_t; the mean of p(x_{t-1}|x_t) is then x_t / sqrt(alpha_t). The
    decoder's sigma_1^2 is beta_1 ("beta", the paper's text) or beta-tilde_2 ("fixedlarge", the released
    code: (1 - abar_1) / (1 - abar_2) * beta_2)."""
    betas = np.linspace(1e-4, 0.02, T)
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    # L_T = KL(N(sqrt(abar_T) x0, 1 - abar_T) || N(0, 1))
    vT = 1 - abar[-1]
    LT = np.sum(0.5 * (vT + abar[-1] * x0**2 - 1 - np.log(vT)))
    # L_{t-1}, t >= 2: KL(N(mu~, beta~) || N(x_t/sqrt(alpha_t), beta_t)) averaged over x_t ~ q(x_t|x0)
    diff = 0.0
    for t in range(2, T + 1):
        b, a, ab, ab_prev = betas[t - 1], alphas[t - 1], abar[t - 1], abar[t - 2]
        bt = (1 - ab_prev) / (1 - ab) * b
        c0, ct = math.sqrt(ab_prev) * b / (1 - ab), math.sqrt(a) * (1 - ab_prev) / (1 - ab)
        k = ct - 1 / math.sqrt(a)  # mu~ - x_t/sqrt(alpha_t) = c0 x0 + k x_t
        mean = (c0 + k * math.sqrt(ab)) * x0
        var = k**2 * (1 - ab)
        diff += np.sum(0.5 * (np.log(b / bt) + bt / b - 1 + (mean**2 + var) / b))
    # L_0 = -log P(bin of x0) under N(x_1/sqrt(alpha_1), beta_1), x_1 = sqrt(alpha_1) x0 + sqrt(beta_1) z
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    s = math.sqrt(betas[0] if var_type == "beta" else (1 - abar[0]) / (1 - abar[1]) * betas[1])
    L0 = 0.0
    for xv in x0.ravel():
        m = xv + math.sqrt(betas[0] / alphas[0]) * z
        hi = 1.0 if xv > 0.999 else stats.norm.cdf((xv + 1 / 255 - m) / s)
        lo = 0.0 if xv < -0.999 else stats.norm.cdf((xv - 1 / 255 - m) / s)
        L0 += -np.sum(w * np.log(np.maximum(hi - lo, 1e-300)))
    return float(LT), float(L0), float(diff)


@pytest.fixture(scope="module")
def tiny_images():
    """Two 8-bit 1x3x3 images (edge values included), each repeated 48 times."""
    v = np.array([[0, 255, 128, 1, 254, 64, 200, 30, 127], [255, 255, 0, 0, 100, 150, 10, 245, 90]], dtype=np.float64)
    x = torch.from_numpy(v / 127.5 - 1).reshape(2, 1, 3, 3).float()
    return x, x.repeat_interleave(48, dim=0)


def test_bits_per_dim_of_the_zero_model_matches_an_independent_computation(tiny_images):
    x, reps = tiny_images
    T, D = 1000, 9
    for k, var_type in ((0, "beta"), (1, "beta"), (0, "fixedlarge"), (1, "fixedlarge")):
        LT, L0, diff = _expected_bound_zero_model(x[k, 0].double().numpy(), T, var_type)
        want = (LT + L0 + diff) / (D * math.log(2))
        rows = reps[k * 48 : (k + 1) * 48]
        exact = nll_bits_per_dim(zero_eps_model, Schedule.linear(T), rows, batch_size=48, seed=k, var_type=var_type)
        assert exact["exact_sum"] and exact["num_timesteps"] == T
        # a single x_t draw per term: the per-image values scatter around the expectation
        assert abs(exact["bpd"] - want) < 4 * exact["stderr"] + 1e-9, (
            f"image {k}: {exact['bpd']:.4f} +- {exact['stderr']:.4f} bits/dim vs independent {want:.4f}"
        )
        assert exact["prior_bpd"] == pytest.approx(LT / (D * math.log(2)), rel=1e-4)
        assert abs(exact["l0_bpd"] - L0 / (D * math.log(2))) < 0.02 * L0 / (D * math.log(2)) + 0.02
        for stratified in (True, False) if var_type == "fixedlarge" else ():  # the default var_type
            est = nll_bits_per_dim(
                zero_eps_model,
                Schedule.linear(T),
                rows,
                num_timesteps=25,
                batch_size=48,
                seed=10 + k,
                stratified=stratified,
            )
            assert not est["exact_sum"] and est["num_timesteps"] == 25
            assert abs(est["bpd"] - want) < 4 * est["stderr"], (
                f"{'stratified' if stratified else 'uniform'} estimate {est['bpd']:.3f} +- {est['stderr']:.3f} "
                f"vs {want:.3f}"
            )


def test_zero_initialised_unet_is_the_zero_model():
    from edudiff.nn import UNet, mnist_tiny

    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 1, 28, 28)) / 127.5 - 1).float()
    s = Schedule.linear(1000)
    a = nll_bits_per_dim(UNet(mnist_tiny()), s, x, num_timesteps=5, seed=3)
    b = nll_bits_per_dim(zero_eps_model, s, x, num_timesteps=5, seed=3)
    assert torch.allclose(a["per_image"], b["per_image"], rtol=1e-6)


def test_nll_rejects_non_8bit_data():
    with pytest.raises(ValueError, match="8-bit data"):
        nll_bits_per_dim(zero_eps_model, Schedule.linear(10), torch.full((2, 1, 4, 4), 0.1234))
    with pytest.raises(ValueError, match="num_timesteps must be >= 2"):
        nll_bits_per_dim(zero_eps_model, Schedule.linear(10), torch.zeros(2, 1, 4, 4) - 1, num_timesteps=1)
    assert check_8bit(torch.tensor([[-1.0, 1.0, 1 / 127.5 - 1]])) is not None


# ------------------------------------------------------------------------------------------------
# The MNIST classifier and the sample-quality report
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist():
    from edudiff.data import load_mnist

    return load_mnist(DATA, train=True), load_mnist(DATA, train=False)


@pytest.fixture(scope="module")
def classifier(mnist):
    train_ds, _ = mnist
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # a tiny training: 150 steps of 64 on the first 6000 images
        return train_classifier(train_ds.images[:6000], train_ds.labels[:6000], steps=150, device="cpu")
    finally:
        torch.set_num_threads(old)


@needs_mnist
def test_classifier_learns_mnist(classifier, mnist):
    _, test_ds = mnist
    acc = classifier_accuracy(classifier, test_ds.images[:3000], test_ds.labels[:3000])
    assert acc > 0.90, f"test accuracy {acc:.3f} after a tiny training; expected > 0.90"
    padded = torch.nn.functional.pad(test_ds.images[:200], (2, 2, 2, 2), value=-1.0)
    assert classifier_accuracy(classifier, padded, test_ds.labels[:200]) == classifier_accuracy(
        classifier, test_ds.images[:200], test_ds.labels[:200]
    )
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        classifier(torch.zeros(2, 3, 28, 28))


@needs_mnist
def test_class_match_counts_real_digits_by_their_labels_and_not_by_wrong_ones(classifier, mnist):
    """Real test digits asked to show their own label match about as often as the classifier is confidently right
    (at least accuracy - share unconfident); asked to show a different digit, they almost never match; asked to show
    a random digit, about 1 in 10 of the confident ones match (within 5 standard errors)."""
    _, test_ds = mnist
    x, y = test_ds.images[:1000], test_ds.labels[:1000]
    ref = classifier_outputs(classifier, test_ds.images[1000:2000])[1]
    right = sample_quality(classifier, x, ref, labels=y)
    wrong = sample_quality(classifier, x, ref, labels=(y + 1) % 10)
    rand = sample_quality(
        classifier, x, ref, labels=torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(3))
    )
    acc = classifier_accuracy(classifier, x, y)
    assert right["class_match"] >= acc - (1 - right["confident_fraction"]) - 1e-12, (right, acc)
    assert wrong["class_match"] < 1 - acc + 0.01, wrong
    p = 0.1 * right["confident_fraction"]
    assert abs(rand["class_match"] - p) < 5 * math.sqrt(p * (1 - p) / 1000), rand
    with pytest.raises(ValueError, match="digit classes 0..9"):
        sample_quality(classifier, x[:3], ref, labels=torch.tensor([1, 2, 10]))


@needs_mnist
def test_sample_quality_report_real_vs_noise(classifier):
    g = torch.Generator().manual_seed(0)
    n = 200
    res = mnist_sample_quality(torch.rand((n, 1, 28, 28), generator=g) * 2 - 1, classifier, n_reference=2000, root=DATA)
    real, noise, samples = res["real_test"], res["noise"], res["samples"]
    assert real["confident_fraction"] > 0.8, real
    assert noise["fd"] > 5 * real["fd"], f"noise should be far from the data: {noise['fd']} vs {real['fd']}"
    assert samples["fd"] == pytest.approx(noise["fd"], rel=0.5)  # these "samples" are noise as well
    assert sum(real["class_counts"]) == n and min(real["class_counts"]) > 0, "real digits cover all classes"
    assert "real test images (floor)" in format_quality(res)
    # the report on real data equals sample_quality computed directly
    from edudiff.images.evaluate import classifier_outputs

    direct = sample_quality(
        classifier, torch.zeros(4, 1, 28, 28) - 1, classifier_outputs(classifier, torch.rand(50, 1, 28, 28))[1]
    )
    assert 0.0 <= direct["confident_fraction"] <= 1.0 and math.isfinite(direct["fd"])


@needs_mnist
def test_classifier_cache(tmp_path, monkeypatch, mnist):
    import edudiff.data
    from edudiff.data import ImageDataset

    train_ds, test_ds = mnist
    small = {
        True: ImageDataset(train_ds.images[:2000], train_ds.labels[:2000]),
        False: ImageDataset(test_ds.images[:500], test_ds.labels[:500]),
    }
    monkeypatch.setattr(edudiff.data, "load_mnist", lambda root=None, train=True, **kw: small[train])
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, info_a = load_or_train_classifier(cache_dir=tmp_path, steps=5, device="cpu")
        b, info_b = load_or_train_classifier(cache_dir=tmp_path, steps=5, device="cpu")
        assert not info_a["cached"] and info_b["cached"] and info_a["path"] == info_b["path"]
        assert info_b["test_accuracy"] == info_a["test_accuracy"]
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k])
        info_a["path"].write_bytes(b"broken")
        with pytest.warns(UserWarning, match="unusable"):
            c, info_c = load_or_train_classifier(cache_dir=tmp_path, steps=5, device="cpu")
        assert not info_c["cached"] and isinstance(c, MNISTClassifier)
    finally:
        torch.set_num_threads(old)


@needs_mnist
def test_evaluate_cli(tmp_path, capsys, monkeypatch):
    """python -m edudiff evaluate on a tiny checkpoint (the classifier cache is pre-filled, so nothing trains)."""
    from edudiff.images.evaluate import main
    from edudiff.nn.checkpoint import save_checkpoint
    from edudiff.training import TrainConfig, train

    monkeypatch.setenv("EDUDIFF_FAST", "1")
    g = torch.Generator().manual_seed(0)
    fake = torch.randint(0, 256, (16, 1, 28, 28), generator=g).float() / 127.5 - 1
    run = train(
        TrainConfig.recommended("mnist", fast=True, steps=2, batch_size=4, out=str(tmp_path / "run")),
        dataset=fake,
        progress=False,
    )
    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "cache" / "mnist_classifier_200steps_seed0.pt",
        {"model": MNISTClassifier().state_dict(), "test_accuracy": 0.5, "version": 1},
    )
    code = main(
        [
            "--ckpt",
            str(run.checkpoint),
            "--n-images",
            "4",
            "--timesteps",
            "5",
            "--n-samples",
            "8",
            "--ddim-steps",
            "3",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--device",
            "cpu",
            "--data-root",
            str(DATA),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bits/dim" in out and "unbiased estimate" in out and "real test images (floor)" in out, out
    assert main(["--ckpt", str(tmp_path / "none.pt")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err
