r"""The reverse process :math:`p_\theta(x_{t-1}|x_t)`: the model call, the two fixed variances, the step's
mean and variance.

* reverse step (eq. 1, 11): :math:`p_\theta(x_{t-1}|x_t) = \mathcal N(\mu_\theta(x_t,t), \sigma_t^2 I)` with
  :math:`\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t
  - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon_\theta(x_t,t)\big)`
* the two fixed variances of sec. 3.2: ``var_type="beta"`` (:math:`\sigma_t^2=\beta_t`, optimal when
  x_0 ~ N(0, I)) and ``var_type="beta_tilde"`` (:math:`\sigma_t^2=\tilde\beta_t`, optimal when x_0 is
  one fixed point). ``"fixedsmall"`` (improved-diffusion's name) is ``"beta_tilde"``; ``"fixedlarge"`` is
  ``"beta"`` except at t = 1, where the released code uses :math:`\tilde\beta_2` "to get a better decoder log
  likelihood" (see :meth:`edudiff.Schedule.model_log_variance`).

A model is any callable ``model(x_t, t) -> eps_hat`` with x_t (B, ...) and t a LongTensor (B,) in 1..T.
The samplers (:mod:`edudiff.sampling`), the losses and the bound (:mod:`edudiff.elbo`) all go through
:func:`call_model` and :func:`p_mean_variance`.

Taught in: notebooks/05_l_simple.ipynb.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ._validate import check_finite
from .posterior import posterior_mean_from_eps, predict_x0_from_eps, q_posterior
from .schedules import Schedule

__all__ = ["VAR_TYPES", "check_var_type", "call_model", "eval_mode", "reverse_variance", "p_mean_variance"]

#: Accepted ``var_type`` names -> their family ("beta" or "beta_tilde"). The exact per-t variance of each
#: name (``"fixedlarge"`` differs from ``"beta"`` at t = 1) comes from :meth:`Schedule.model_log_variance`.
VAR_TYPES = {"beta": "beta", "fixedlarge": "beta", "beta_tilde": "beta_tilde", "fixedsmall": "beta_tilde"}


def check_var_type(var_type: str) -> str:
    """The canonical name of a reverse variance, ``"beta"`` or ``"beta_tilde"`` (improved-diffusion's
    ``"fixedlarge"`` / ``"fixedsmall"`` are accepted); a ValueError naming ``var_type`` otherwise."""
    try:
        return VAR_TYPES[var_type]
    except (KeyError, TypeError):
        raise ValueError(
            f"var_type must be 'beta' (sigma_t^2 = beta_t) or 'beta_tilde' (sigma_t^2 = beta-tilde_t); got {var_type!r}"
        ) from None


def call_model(model, xt: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None = None) -> torch.Tensor:
    """``model(xt, t, **model_kwargs)``, checked: the output must be a tensor of x_t's shape (B, ...); cast to
    x_t's dtype. ``model_kwargs`` carries extra inputs, e.g. ``{"y": labels}`` for a class-conditional U-Net
    (improved-diffusion's name)."""
    eps = model(xt, t, **(model_kwargs or {}))
    if not isinstance(eps, torch.Tensor) or eps.shape != xt.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"model(x_t, t) must return eps_hat with the shape of x_t {tuple(xt.shape)}; got {got}")
    return eps.to(xt.dtype)


@contextmanager
def eval_mode(model):
    """Put an nn.Module in eval mode (no dropout) inside the block, and restore its mode after.
    Anything else (a plain function) passes through untouched."""
    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


def reverse_variance(schedule: Schedule, t: torch.Tensor, x: torch.Tensor, var_type: str = "beta"):
    r"""``(variance, log_variance)`` of :math:`p_\theta(x_{t-1}|x_t)`, each shaped to broadcast against x
    (B, 1, ...): :math:`\beta_t` for ``"beta"`` (and ``"fixedlarge"``, which uses :math:`\tilde\beta_2` at
    t = 1); :math:`\tilde\beta_t` with the clipped log-variance (finite at t = 1) for ``"beta_tilde"``.
    The one place the reverse variance is looked up; the per-t table is
    :meth:`Schedule.model_log_variance`."""
    if check_var_type(var_type) == "beta":
        log_variance = schedule.gather(schedule.model_log_variance(var_type), t, x)  # sigma_1^2 per var_type
        return log_variance.exp(), log_variance
    return schedule.gather("posterior_variance", t, x), schedule.gather("posterior_log_variance_clipped", t, x)


def p_mean_variance(
    schedule: Schedule,
    model,
    xt: torch.Tensor,
    t,
    var_type: str = "beta",
    clip_x0: bool = False,
    eps: torch.Tensor | None = None,
) -> dict:
    r"""Mean and variance of the reverse step :math:`p_\theta(x_{t-1}|x_t)` for an eps-predicting model.

    Shapes: ``xt`` (B, ...), ``t`` LongTensor (B,) in 1..T (or an int). Returns a dict with ``mean``,
    ``variance``, ``log_variance`` (each (B, ...)), ``eps`` (the model's output) and ``pred_x0``. With
    ``clip_x0=True`` the predicted x_0 is clipped to [-1, 1] (images) and the mean is the posterior mean
    (eq. 7) given that clipped x_0. ``log_variance`` for ``beta_tilde`` is the clipped one (finite at t=1).
    Pass ``eps`` to reuse a model output already computed (then ``model`` may be None).

    Taught in: notebooks/05_l_simple.ipynb.
    """
    check_var_type(var_type)
    check_finite(xt, "xt")
    t = schedule.check_t(t, batch=xt.shape[0], device=xt.device)
    if eps is None:
        eps = call_model(model, xt, t)
    pred_x0 = predict_x0_from_eps(schedule, xt, t, eps)
    if clip_x0:
        pred_x0 = pred_x0.clamp(-1.0, 1.0)
        mean, _ = q_posterior(schedule, pred_x0, xt, t)
    else:
        mean = posterior_mean_from_eps(schedule, xt, t, eps)
    variance, log_variance = reverse_variance(schedule, t, xt, var_type)
    return {
        "mean": mean,
        "variance": variance.expand_as(xt),
        "log_variance": log_variance.expand_as(xt),
        "eps": eps,
        "pred_x0": pred_x0,
    }
