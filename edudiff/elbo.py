r"""The variational bound (ELBO) of DDPM, term by term (Ho et al. 2020, eq. 5):

.. math::
   L = \underbrace{D_{KL}(q(x_T|x_0)\,\|\,p(x_T))}_{L_T}
     + \sum_{t=2}^{T} \underbrace{D_{KL}(q(x_{t-1}|x_t,x_0)\,\|\,p_\theta(x_{t-1}|x_t))}_{L_{t-1}}
     \underbrace{- \log p_\theta(x_0|x_1)}_{L_0}

All terms are in nats and summed over the data dimensions, one value per batch row (shape (B,)).
:func:`bits_per_dim` converts nats per example to bits per dimension (divide by D ln 2).

Decoders for L_0: ``"discretized"`` — the paper's eq. 13 for 8-bit data in [-1, 1] (bins of width
2/255, the edge bins open to -inf / +inf); ``"gaussian"`` — a continuous Gaussian density, for 1-D toy data.

Taught in: notebooks/04_elbo_terms.ipynb.
"""

from __future__ import annotations

import math

import torch

from ._validate import check_finite, check_same_shape
from .forward import q_mean_var, q_sample
from .posterior import q_posterior
from .reverse import eval_mode, p_mean_variance
from .schedules import Schedule
from .utils import progress_bar

__all__ = [
    "normal_kl",
    "gaussian_log_likelihood",
    "discretized_gaussian_log_likelihood",
    "prior_kl",
    "vb_terms",
    "l_t_minus_1",
    "l_0",
    "elbo_terms",
    "bits_per_dim",
    "sum_over_dims",
]

LOG_2PI = math.log(2 * math.pi)


def sum_over_dims(x: torch.Tensor) -> torch.Tensor:
    """Sum over every dimension but the first: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    r"""Elementwise :math:`D_{KL}(\mathcal N(\mu_1,\sigma_1^2)\,\|\,\mathcal N(\mu_2,\sigma_2^2))` in nats:

    .. math:: \tfrac12\big(-1 + \log\sigma_2^2 - \log\sigma_1^2
              + \sigma_1^2/\sigma_2^2 + (\mu_1-\mu_2)^2/\sigma_2^2\big)

    Arguments broadcast against each other (tensors or floats); variances are given as logs.
    For diagonal multivariate Gaussians, sum the result over the dimensions.

    Taught in: notebooks/04_elbo_terms.ipynb.
    """
    tensor = next((a for a in (mean1, logvar1, mean2, logvar2) if isinstance(a, torch.Tensor)), None)
    if tensor is None:
        raise TypeError("normal_kl needs at least one torch.Tensor argument")
    mean1, logvar1, mean2, logvar2 = (
        a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=tensor.dtype, device=tensor.device)
        for a in (mean1, logvar1, mean2, logvar2)
    )
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_log_likelihood(x: torch.Tensor, mean, log_scale) -> torch.Tensor:
    r"""Elementwise log density :math:`\log\mathcal N(x;\mu,\sigma^2)` with ``log_scale`` = log sigma (a
    continuous decoder, for 1-D toy data). Shape: broadcast of the arguments."""
    return -0.5 * LOG_2PI - log_scale - 0.5 * ((x - mean) * torch.exp(-log_scale)) ** 2


def _log1mexp(a: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(a)) for a <= 0, accurate for a near 0 and for a very negative (Maechler 2012)."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    r"""Elementwise log-probability of 8-bit data under a Gaussian discretized to 256 bins (eq. 13).

    ``x`` holds values on the grid {-1, -1 + 2/255, ..., 1} (uint8 v -> v/127.5 - 1); ``log_scale`` is
    log sigma. The bin of x is [x - 1/255, x + 1/255], the lowest open to -inf, the highest to +inf, so
    the 256 probabilities sum to 1. Uses the exact normal CDF in log space (``torch.special.log_ndtr``),
    choosing the tail where the difference of CDFs does not cancel.

    Taught in: notebooks/04_elbo_terms.ipynb.
    """
    check_finite(x, "x")
    if bool((x.abs() > 1 + 1e-6).any()):
        raise ValueError(
            "x must lie in [-1, 1] (8-bit data mapped by v/127.5 - 1); "
            f"got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]"
        )
    x, mean, log_scale = torch.broadcast_tensors(x, mean, log_scale)
    inv_std = torch.exp(-log_scale)
    lo = (x - mean - 1.0 / 255.0) * inv_std
    hi = (x - mean + 1.0 / 255.0) * inv_std
    log_cdf_hi = torch.special.log_ndtr(hi)  # log Phi(hi)
    log_sf_lo = torch.special.log_ndtr(-lo)  # log (1 - Phi(lo))
    # middle bins: log(Phi(hi) - Phi(lo)); in the upper tail use the survival functions instead
    lower = log_cdf_hi + _log1mexp(torch.special.log_ndtr(lo) - log_cdf_hi)
    upper = log_sf_lo + _log1mexp(torch.special.log_ndtr(-hi) - log_sf_lo)
    middle = torch.where(lo > 0, upper, lower)
    return torch.where(x < -0.999, log_cdf_hi, torch.where(x > 0.999, log_sf_lo, middle))


def prior_kl(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    r""":math:`L_T = D_{KL}(q(x_T|x_0)\,\|\,\mathcal N(0, I))` in nats, summed over dimensions: shape (B,).

    It has no trainable parameter; for the linear T=1000 schedule it is about 1e-5 bits/dim (sec. 4).
    """
    t = torch.full((x0.shape[0],), schedule.T, dtype=torch.long, device=x0.device)
    mean, var = q_mean_var(schedule, x0, t)
    return sum_over_dims(normal_kl(mean, var.log(), torch.zeros_like(mean), torch.zeros_like(mean)))


def _decoder_nll(x0, mean, log_variance, decoder: str) -> torch.Tensor:
    if decoder == "discretized":
        return -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_variance)
    if decoder == "gaussian":
        return -gaussian_log_likelihood(x0, mean, 0.5 * log_variance)
    raise ValueError(
        f"decoder must be 'discretized' (8-bit images) or 'gaussian' (continuous toy data); got {decoder!r}"
    )


def vb_terms(
    schedule: Schedule,
    model,
    x0: torch.Tensor,
    xt: torch.Tensor,
    t,
    var_type: str = "beta",
    decoder: str = "discretized",
    clip_x0: bool = False,
) -> torch.Tensor:
    r"""The bound's term for each row's own t, in nats summed over dimensions, shape (B,):
    :math:`L_{t-1} = D_{KL}(q(x_{t-1}|x_t,x_0)\|p_\theta(x_{t-1}|x_t))` where t >= 2, and
    :math:`L_0 = -\log p_\theta(x_0|x_1)` where t = 1 (``xt`` then holds x_1).
    """
    check_same_shape(x0, xt, "x0", "xt")
    t = schedule.check_t(t, batch=x0.shape[0], device=x0.device)
    out = p_mean_variance(schedule, model, xt, t, var_type=var_type, clip_x0=clip_x0)
    true_mean, _ = q_posterior(schedule, x0, xt, t)
    true_logvar = schedule.gather("posterior_log_variance_clipped", t, x0).expand_as(x0)
    kl = sum_over_dims(normal_kl(true_mean, true_logvar, out["mean"], out["log_variance"]))
    nll = sum_over_dims(_decoder_nll(x0, out["mean"], out["log_variance"], decoder))
    return torch.where(t == 1, nll, kl)


def l_t_minus_1(schedule: Schedule, model, x0, xt, t, var_type: str = "beta", clip_x0: bool = False) -> torch.Tensor:
    """L_{t-1} for t >= 2 (see :func:`vb_terms`); shape (B,)."""
    t = schedule.check_t(t, batch=x0.shape[0], device=x0.device)
    if bool((t < 2).any()):
        raise ValueError("l_t_minus_1 needs t >= 2 (L_{t-1} is a KL between Gaussians); use l_0 for t = 1")
    return vb_terms(schedule, model, x0, xt, t, var_type=var_type, clip_x0=clip_x0)


def l_0(
    schedule: Schedule, model, x0, x1, var_type: str = "beta", decoder: str = "discretized", clip_x0: bool = False
) -> torch.Tensor:
    """L_0 = -log p_theta(x_0 | x_1) (see :func:`vb_terms`); ``x1`` is a sample of q(x_1|x_0); shape (B,)."""
    t = torch.ones(x0.shape[0], dtype=torch.long, device=x0.device)
    return vb_terms(schedule, model, x0, x1, t, var_type=var_type, decoder=decoder, clip_x0=clip_x0)


def bits_per_dim(nats: torch.Tensor, num_dims: int) -> torch.Tensor:
    """Convert nats per example to bits per dimension: nats / (D ln 2)."""
    return nats / (num_dims * math.log(2.0))


@torch.no_grad()
def elbo_terms(
    schedule: Schedule,
    model,
    x0: torch.Tensor,
    var_type: str = "beta",
    decoder: str = "discretized",
    clip_x0: bool = False,
    timesteps=None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict:
    r"""Evaluate every term of the bound for an eps-model on a batch ``x0`` (B, ...).

    For each t in ``timesteps`` (default all of 1..T) one x_t ~ q(x_t|x_0) is drawn and the term
    L_{t-1} (or L_0 at t = 1) computed. Returns a dict:

    * ``prior``: L_T, shape (B,);  ``vb``: shape (B, K), column k the term at ``timesteps[k]``;
    * ``timesteps``: LongTensor (K,);  ``total``: L_T + sum of ``vb``, shape (B,) — the negative ELBO
      in nats when all T steps are evaluated; ``bpd``: ``total`` in bits per dimension.

    The negative ELBO upper-bounds -log p_theta(x_0). Taught in: notebooks/04_elbo_terms.ipynb.
    """
    check_finite(x0, "x0")
    B = x0.shape[0]
    ts = schedule.timesteps if timesteps is None else torch.as_tensor(timesteps, dtype=torch.long).reshape(-1)
    schedule.check_t(ts, name="timesteps")
    prior = prior_kl(schedule, x0)
    terms = []
    iterator = progress_bar(ts.tolist(), progress, desc="ELBO terms", leave=False)
    with eval_mode(model):
        for t in iterator:
            tt = torch.full((B,), t, dtype=torch.long, device=x0.device)
            xt = q_sample(schedule, x0, tt, generator=generator)
            terms.append(vb_terms(schedule, model, x0, xt, tt, var_type=var_type, decoder=decoder, clip_x0=clip_x0))
    vb = torch.stack(terms, dim=1)
    total = prior + vb.sum(dim=1)
    D = x0[0].numel()
    return {"prior": prior, "vb": vb, "timesteps": ts, "total": total, "bpd": bits_per_dim(total, D)}
