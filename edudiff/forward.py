r"""The forward (noising) process q.

* one step (eq. 2):   :math:`q(x_t|x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I)`
* the jump (eq. 4):   :math:`q(x_t|x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I)`

Shapes: data x is (B, ...) (any trailing shape: (B,) for 1-D toys, (B, C, H, W) for images);
t is a LongTensor (B,) with values in 1..T (or a Python int, broadcast over the batch).

Taught in: notebooks/01_gaussian_mixture_diffusion.ipynb (one step) and
notebooks/02_closed_form_jump.ipynb (the jump).
"""

from __future__ import annotations

import torch

from ._validate import check_finite, check_same_shape, renamed_argument
from .schedules import Schedule

__all__ = ["q_step", "q_mean_var", "q_sample", "randn_like"]


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn from ``generator`` when one is given
    (on the generator's device, then moved to ``x``'s) so results are reproducible."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)


def _noise(x: torch.Tensor, eps, generator) -> torch.Tensor:
    if eps is None:
        return randn_like(x, generator)
    check_finite(eps, "eps")
    check_same_shape(eps, x, "eps", "x")
    return eps


def q_step(
    schedule: Schedule,
    x_prev: torch.Tensor,
    t,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""One forward step x_{t-1} -> x_t:  :math:`x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon`.

    Args: ``x_prev`` (B, ...) holds x_{t-1}; ``t`` (B,) in 1..T; ``eps`` like ``x_prev`` (default fresh N(0, I);
    ``noise=`` is its old name).
    Returns x_t, shape (B, ...).

    Taught in: notebooks/01_gaussian_mixture_diffusion.ipynb.
    """
    check_finite(x_prev, "x_prev")
    t = schedule.check_t(t, batch=x_prev.shape[0], device=x_prev.device)
    eps = _noise(x_prev, renamed_argument(eps, noise, "eps", "noise"), generator)
    return schedule.gather("sqrt_alphas", t, x_prev) * x_prev + schedule.gather("sqrt_betas", t, x_prev) * eps


def q_mean_var(schedule: Schedule, x0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mean and variance of the jump
    :math:`q(x_t|x_0) = \mathcal N(\sqrt{\bar\alpha_t}x_0, (1-\bar\alpha_t)I)` (eq. 4).

    Returns ``(mean, variance)``, both of shape (B, ...) like ``x0``.

    Taught in: notebooks/02_closed_form_jump.ipynb.
    """
    check_finite(x0, "x0")
    t = schedule.check_t(t, batch=x0.shape[0], device=x0.device)
    mean = schedule.gather("sqrt_alpha_bars", t, x0) * x0
    var = schedule.gather("one_minus_alpha_bars", t, x0).expand_as(x0)
    return mean, var


def q_sample(
    schedule: Schedule,
    x0: torch.Tensor,
    t,
    eps: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Sample the jump: :math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`,
    :math:`\epsilon\sim\mathcal N(0,I)` (eq. 4; Algorithm 1 line 5). diffusers calls this ``add_noise``.

    Args: ``x0`` (B, ...); ``t`` (B,) in 1..T; ``eps`` like ``x0`` (default fresh N(0, I) from ``generator``;
    ``noise=`` is its old name).
    Returns x_t, shape (B, ...).

    Taught in: notebooks/02_closed_form_jump.ipynb.
    """
    check_finite(x0, "x0")
    t = schedule.check_t(t, batch=x0.shape[0], device=x0.device)
    eps = _noise(x0, renamed_argument(eps, noise, "eps", "noise"), generator)
    return schedule.gather("sqrt_alpha_bars", t, x0) * x0 + schedule.gather("sqrt_one_minus_alpha_bars", t, x0) * eps
