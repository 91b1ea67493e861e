r"""The statistics behind the notebooks' Monte Carlo checks: a sample against a known distribution.

A check of the form "these particles follow that distribution" needs three things, each written once here instead
of in every notebook cell:

* a **Kolmogorov-Smirnov test** against an exact CDF (scipy): the largest gap between the empirical CDF and the
  exact one, rejected when its p-value falls below ``p_min``;
* the **mean within Z standard errors**, :math:`\mathrm{SE} = \sqrt{\mathrm{Var}/n}` (the CLT);
* the **variance within Z standard errors**, :math:`\mathrm{SE} = \sqrt{(m_4 - \sigma^4)/n}` with :math:`m_4` the
  fourth central moment, both estimated from the sample (the CLT for the sample variance).

With ``Z = 5`` a correct sampler fails a moment check with probability below :math:`10^{-6}`; with ``p_min = 1e-3``
it fails the KS test one time in a thousand. Every function raises ``AssertionError`` with a message naming the
label, what was expected and what came out.

Taught in: notebooks/01_gaussian_mixture_diffusion.ipynb (and used by the checks of 02-05).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = ["mixture_cdf", "se_of_mean", "se_of_variance", "check_ks", "check_moments", "check_sample"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1)


def mixture_cdf(x, weights, means, stds) -> np.ndarray:
    """CDF of the 1-D Gaussian mixture :math:`\\sum_k w_k \\mathcal N(\\mu_k, s_k^2)` at ``x`` (scipy's normal CDF)."""
    w, m, s = (_np(v) for v in (weights, means, stds))
    x = np.asarray(x, dtype=np.float64)[..., None]
    return (w * stats.norm.cdf(x, loc=m, scale=s)).sum(-1)


def se_of_mean(x) -> float:
    """CLT standard error of the sample mean: sqrt(var / n)."""
    x = _np(x)
    return math.sqrt(x.var() / x.size)


def se_of_variance(x) -> float:
    """CLT standard error of the sample variance: sqrt((m4 - var^2) / n), m4 the fourth central moment."""
    x = _np(x)
    c = x - x.mean()
    return math.sqrt(max((c**4).mean() - c.var() ** 2, 0.0) / x.size)


def check_ks(x, cdf, label: str, p_min: float = 1e-3) -> float:
    """Assert that the sample ``x`` follows the distribution with CDF ``cdf`` (a callable), by a KS test.

    Returns the p-value."""
    p = float(stats.kstest(_np(x), cdf).pvalue)
    assert p > p_min, f"{label}: the sample does not follow the expected distribution (KS p-value {p:.2e} < {p_min:g})"
    return p


def check_moments(x, mean: float | None, var: float | None, label: str, z: float = 5.0) -> None:
    """Assert that the sample mean and/or variance of ``x`` are within ``z`` CLT standard errors of ``mean`` and
    ``var`` (either may be None to skip it)."""
    x = _np(x)
    if mean is not None:
        se = se_of_mean(x)
        assert abs(x.mean() - mean) < z * se, (
            f"{label}: sample mean {x.mean():.5f} vs expected {mean:.5f} (SE {se:.5f}, off by "
            f"{abs(x.mean() - mean) / se:.1f} SE, allowed {z:g})"
        )
    if var is not None:
        se = se_of_variance(x)
        assert abs(x.var() - var) < z * se, (
            f"{label}: sample variance {x.var():.5f} vs expected {var:.5f} (SE {se:.5f}, off by "
            f"{abs(x.var() - var) / se:.1f} SE, allowed {z:g})"
        )


def check_sample(x, cdf, mean: float, var: float, label: str, z: float = 5.0, p_min: float = 1e-3) -> None:
    """All three checks at once: the KS test against ``cdf``, then the mean and the variance within ``z`` SE."""
    check_ks(x, cdf, label, p_min=p_min)
    check_moments(x, mean, var, label, z=z)
