r"""Training losses: L_simple (Algorithm 1) and the eps-loss weighted as in the true bound.

With fixed variances sigma_t^2, each KL term of the bound is a weighted eps error (eq. 8-12):

.. math:: L_{t-1} = \lambda_t\,\|\epsilon - \epsilon_\theta(x_t,t)\|^2 + C_t, \qquad
          \lambda_t = \frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)}

L_simple drops lambda_t (weight 1 for every t, eq. 14). :func:`elbo_weights` exposes lambda_t so a
notebook can plot the two weightings against each other.

:func:`min_snr_weights` / :func:`loss_min_snr`: the Min-SNR-gamma weighting of Hang et al. 2023 (sec. 3.4):
each t's eps error is weighted by :math:`w_t = \min(\mathrm{SNR}_t, \gamma)/\mathrm{SNR}_t`, with
:math:`\mathrm{SNR}_t = \bar\alpha_t/(1-\bar\alpha_t)`. Where the signal dominates (small t, SNR > gamma)
the weight falls below 1; elsewhere it is 1, i.e. L_simple. The CPU recipe trains with it (gamma = 5).

Taught in: notebooks/05_l_simple.ipynb (L_simple, the bound's weights), notebooks/06_unet_mnist.ipynb (Min-SNR).
"""

from __future__ import annotations

import torch

from ._validate import check_finite, renamed_argument
from .forward import q_sample, randn_like
from .reverse import call_model, check_var_type
from .schedules import Schedule

__all__ = ["elbo_weights", "min_snr_weights", "sample_timesteps", "loss_simple", "loss_elbo_weighted", "loss_min_snr"]


def elbo_weights(schedule: Schedule, var_type: str = "beta") -> torch.Tensor:
    r""":math:`\lambda_t = \beta_t^2 / (2\sigma_t^2\alpha_t(1-\bar\alpha_t))`, float64 of length T+1 (index 0 = 0).

    At t = 1 the same formula is the weight of L_0 under a Gaussian decoder of variance sigma_1^2, which
    :meth:`Schedule.model_log_variance` gives per ``var_type`` (beta_1 for ``"beta"``; beta-tilde_2 for
    ``"fixedlarge"`` and the clipped ``beta_tilde``).
    """
    check_var_type(var_type)
    sigma2 = schedule.model_log_variance(var_type).exp()
    lam = schedule.betas**2 / (2 * sigma2 * schedule.alphas * schedule.one_minus_alpha_bars.clamp_min(1e-300))
    lam[0] = 0.0
    return lam


def sample_timesteps(
    schedule: Schedule, batch: int, device=None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """t ~ Uniform{1, ..., T}, a LongTensor (B,) (Algorithm 1, line 3)."""
    gen_device = generator.device if generator is not None else device
    return torch.randint(1, schedule.T + 1, (batch,), generator=generator, device=gen_device).to(device)


def min_snr_weights(schedule: Schedule, gamma: float = 5.0) -> torch.Tensor:
    r"""Min-SNR-gamma weights for the eps error, :math:`w_t = \min(\mathrm{SNR}_t,\gamma)/\mathrm{SNR}_t`
    (Hang et al. 2023), float64 of length T+1 for t = 0..T (index 0, "no noise", holds 0: never used).

    ``gamma`` must be positive; ``gamma = inf`` gives weight 1 for every t (L_simple).
    """
    gamma = float(gamma)
    if not gamma > 0:
        raise ValueError(f"gamma must be positive (Hang et al. use 5), got {gamma!r}")
    snr = schedule.snr[1:]
    w = torch.clamp(snr, max=gamma) / snr
    return torch.cat([torch.zeros(1, dtype=w.dtype), w])


def _eps_error(schedule, model, x0, t, eps, generator, model_kwargs=None):
    check_finite(x0, "x0")
    if t is None:
        t = sample_timesteps(schedule, x0.shape[0], device=x0.device, generator=generator)
    t = schedule.check_t(t, batch=x0.shape[0], device=x0.device)
    if eps is None:
        eps = randn_like(x0, generator)
    xt = q_sample(schedule, x0, t, eps=eps)
    sq = (eps - call_model(model, xt, t, model_kwargs)) ** 2
    return sq.reshape(sq.shape[0], -1).mean(dim=1), t


def _reduce(per_example: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_example.mean()
    if reduction == "none":
        return per_example
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def loss_simple(
    schedule: Schedule,
    model,
    x0: torch.Tensor,
    t=None,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    *,
    noise: torch.Tensor | None = None,
    model_kwargs: dict | None = None,
) -> torch.Tensor:
    r"""Algorithm 1's loss
    :math:`\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\epsilon, t)\|^2`
    (eq. 14), averaged over dimensions; t ~ U{1..T} and eps ~ N(0, I) unless given.

    ``reduction="mean"`` gives a scalar; ``"none"`` gives one value per row (B,). ``noise=`` is the old
    name of ``eps``. ``model_kwargs`` go to the model, e.g. ``{"y": labels}`` for a class-conditional U-Net.
    """
    eps = renamed_argument(eps, noise, "eps", "noise")
    per_example, _ = _eps_error(schedule, model, x0, t, eps, generator, model_kwargs)
    return _reduce(per_example, reduction)


def loss_elbo_weighted(
    schedule: Schedule,
    model,
    x0: torch.Tensor,
    t=None,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    var_type: str = "beta",
    reduction: str = "mean",
    *,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""The eps-loss with the bound's weights: :math:`T\,\lambda_t\,\|\epsilon-\epsilon_\theta\|^2 / D`.

    With t ~ U{1..T} its expectation is :math:`\frac1D\sum_{t=1}^T (L_{t-1} - C_t)`, the bound per
    dimension up to constants (for a continuous Gaussian decoder at t = 1).
    """
    eps = renamed_argument(eps, noise, "eps", "noise")
    per_example, t = _eps_error(schedule, model, x0, t, eps, generator)
    lam = elbo_weights(schedule, var_type).to(device=x0.device, dtype=per_example.dtype)[t]
    return _reduce(schedule.T * lam * per_example, reduction)


def loss_min_snr(
    schedule: Schedule,
    model,
    x0: torch.Tensor,
    t=None,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    gamma: float = 5.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""The eps error weighted by Min-SNR-gamma: :math:`w_t\,\|\epsilon - \epsilon_\theta(x_t, t)\|^2` averaged
    over dimensions, with :math:`w_t` from :func:`min_snr_weights`; t ~ U{1..T} and eps ~ N(0, I) unless given.
    """
    per_example, t = _eps_error(schedule, model, x0, t, eps, generator)
    w = min_snr_weights(schedule, gamma).to(device=x0.device, dtype=per_example.dtype)[t]
    return _reduce(w * per_example, reduction)
