"""edudiff.course.stats: the Monte Carlo checks accept a correct sampler and reject wrong ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from edudiff.course.stats import check_ks, check_moments, check_sample, mixture_cdf, se_of_mean, se_of_variance

W, M, S = np.array([0.3, 0.7]), np.array([-2.0, 1.5]), np.array([0.5, 0.3])


def mixture_sample(n, rng):
    comp = rng.random(n) < W[0]
    return np.where(comp, rng.normal(M[0], S[0], n), rng.normal(M[1], S[1], n))


def test_mixture_cdf_is_the_integral_of_the_density():
    xs = np.linspace(-6, 4, 20001)
    pdf = (W * stats.norm.pdf(xs[:, None], M, S)).sum(1)
    want = integrate.cumulative_trapezoid(pdf, xs, initial=0.0)
    assert np.abs(mixture_cdf(xs, W, M, S) - want).max() < 1e-6


def test_standard_errors_match_their_formulas_for_normal_data():
    x = np.random.default_rng(0).normal(0, 2.0, 200_000)
    assert math.isclose(se_of_mean(x), 2.0 / math.sqrt(x.size), rel_tol=0.01)
    assert math.isclose(se_of_variance(x), 4.0 * math.sqrt(2 / x.size), rel_tol=0.02)  # normal: m4 = 3 sigma^4


def test_a_correct_sample_passes_and_wrong_ones_fail():
    rng = np.random.default_rng(1)
    x = mixture_sample(20_000, rng)
    mean = float((W * M).sum())
    var = float((W * (M**2 + S**2)).sum() - mean**2)
    cdf = lambda v: mixture_cdf(v, W, M, S)  # noqa: E731
    check_sample(x, cdf, mean, var, "the mixture")
    with pytest.raises(AssertionError, match="KS p-value"):
        check_ks(x + 0.05, cdf, "shifted")
    with pytest.raises(AssertionError, match="sample mean"):
        check_moments(x + 0.1, mean, None, "shifted")
    with pytest.raises(AssertionError, match="sample variance"):
        check_moments(1.05 * (x - mean) + mean, None, var, "stretched")
