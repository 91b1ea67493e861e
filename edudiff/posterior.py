r"""The forward-process posterior q(x_{t-1} | x_t, x_0) and the conversions between
the three things a network can predict: the noise eps, the clean x_0, or the posterior mean.

* posterior (eq. 6-7):
  :math:`q(x_{t-1}|x_t,x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)`,
  :math:`\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}x_0
  + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}x_t`,
  :math:`\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t`
* x_0 from eps (eq. 4 solved for x_0): :math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}`
* the mean in eps-form (eq. 10-11):
  :math:`\tilde\mu_t = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon\big)`

Shapes: x0, xt, eps are (B, ...); t is a LongTensor (B,) in 1..T (or an int).

Taught in: notebooks/03_posterior.ipynb.
"""

from __future__ import annotations

import torch

from ._validate import check_finite, check_same_shape
from .schedules import Schedule

__all__ = ["q_posterior", "predict_x0_from_eps", "predict_eps_from_x0", "posterior_mean_from_eps"]


def _prep(schedule: Schedule, a, b, t, name_a: str, name_b: str):
    check_finite(a, name_a)
    check_finite(b, name_b)
    check_same_shape(a, b, name_a, name_b)
    return schedule.check_t(t, batch=a.shape[0], device=a.device)


def q_posterior(schedule: Schedule, x0: torch.Tensor, xt: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of :math:`q(x_{t-1}|x_t, x_0)` (eq. 6-7), each of shape (B, ...).

    At t=1 the variance is :math:`\tilde\beta_1 = 0` and the mean is x_0 (nothing is left to denoise).
    For a log-variance that is finite at t=1, use ``schedule.posterior_log_variance_clipped``.

    Taught in: notebooks/03_posterior.ipynb.
    """
    t = _prep(schedule, x0, xt, t, "x0", "xt")
    mean = schedule.gather("posterior_mean_coef_x0", t, x0) * x0 + schedule.gather("posterior_mean_coef_xt", t, xt) * xt
    var = schedule.gather("posterior_variance", t, x0).expand_as(x0)
    return mean, var


def predict_x0_from_eps(schedule: Schedule, xt: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon)/\sqrt{\bar\alpha_t}`; shape (B, ...).

    Taught in: notebooks/03_posterior.ipynb.
    """
    t = _prep(schedule, xt, eps, t, "xt", "eps")
    return (xt - schedule.gather("sqrt_one_minus_alpha_bars", t, xt) * eps) / schedule.gather("sqrt_alpha_bars", t, xt)


def predict_eps_from_x0(schedule: Schedule, xt: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
    r""":math:`\epsilon = (x_t - \sqrt{\bar\alpha_t}\,x_0)/\sqrt{1-\bar\alpha_t}`; shape (B, ...).

    Taught in: notebooks/03_posterior.ipynb.
    """
    t = _prep(schedule, xt, x0, t, "xt", "x0")
    return (xt - schedule.gather("sqrt_alpha_bars", t, xt) * x0) / schedule.gather("sqrt_one_minus_alpha_bars", t, xt)


def posterior_mean_from_eps(schedule: Schedule, xt: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    r"""The posterior mean in eps-form (eq. 11):
    :math:`\mu = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon\big)`;
    shape (B, ...).

    With the true eps this equals :func:`q_posterior`'s mean; with a network's eps it is
    :math:`\mu_\theta(x_t, t)`, the mean of the reverse step p(x_{t-1}|x_t).

    Taught in: notebooks/03_posterior.ipynb.
    """
    t = _prep(schedule, xt, eps, t, "xt", "eps")
    beta = schedule.gather("betas", t, xt)
    return (xt - beta / schedule.gather("sqrt_one_minus_alpha_bars", t, xt) * eps) / schedule.gather(
        "sqrt_alphas", t, xt
    )
