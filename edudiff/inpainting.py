r"""Inpainting with a trained unconditional model: conditioning on known pixels by replacement, with RePaint's
resampling (Lugmayr et al. 2022).

Known pixels ``x_known`` (where ``mask`` is 1) are held fixed; the rest is drawn. At every reverse step the known
region of :math:`x_{t-1}` is replaced by a fresh sample of the forward process,
:math:`x_{t-1}^{known} \sim q(x_{t-1}|x_0) = \mathcal N(\sqrt{\bar\alpha_{t-1}}\,x_0, (1-\bar\alpha_{t-1}) I)` (eq. 4;
the known pixels themselves at t - 1 = 0), while the unknown region comes from the model's reverse step
:math:`p_\theta(x_{t-1}|x_t)`:

.. math:: x_{t-1} = m \odot x_{t-1}^{known} + (1 - m) \odot x_{t-1}^{unknown}.

The two halves are drawn independently, so they need not agree ("harmonise"); RePaint's **resampling** repeats each
step ``resample_steps`` = U times, going back one forward step in between,
:math:`x_t \sim q(x_t|x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)`, which lets the unknown region
adapt to the known one (U = 1 is plain replacement; the paper uses U = 10 with jumps of 10 steps -- here every
step is resampled, jump length 1).

Shapes: ``x_known`` (B, ...) in the data's scale, ``mask`` broadcastable to it, 1 = known. A model is any callable
``model(x_t, t) -> eps_hat``; t runs 1..T.

Taught in: notebooks/09_guiding_trained_models.ipynb. Checked against the exact conditional of a
Gaussian mixture in tests/test_inpainting.py.
"""

from __future__ import annotations

import torch

from ._validate import check_finite, check_positive_int
from .forward import randn_like
from .reverse import check_var_type, eval_mode, p_mean_variance
from .sampling import respace
from .schedules import Schedule
from .utils import progress_bar

__all__ = ["inpaint"]


def _check_mask(mask, x_known: torch.Tensor) -> torch.Tensor:
    mask = torch.as_tensor(mask, device=x_known.device)
    try:
        torch.broadcast_shapes(mask.shape, x_known.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to x_known's {tuple(x_known.shape)}; "
            f"give one 0/1 entry per value (1 = known)"
        ) from None
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 (to draw) and 1 (known)")
    return mask.to(x_known.dtype)


@torch.no_grad()
def inpaint(
    schedule: Schedule,
    model,
    x_known: torch.Tensor,
    mask,
    resample_steps: int = 1,
    var_type: str = "beta",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = False,
    steps: int | None = None,
) -> torch.Tensor:
    """Fill in the unknown region (``mask == 0``) of ``x_known`` with the model; returns x_0, shape of ``x_known``,
    equal to ``x_known`` where ``mask == 1``.

    ``resample_steps``: RePaint's U (1 = replacement only). ``var_type`` and ``clip_x0`` as in
    :func:`edudiff.sample`. ``steps``: run on the schedule respaced to that many of its timesteps
    (:func:`edudiff.sampling.respace`; None = all T), the way to make it affordable on a CPU. Costs
    ``steps * resample_steps`` network calls (``T * resample_steps`` without ``steps``).
    """
    check_finite(x_known, "x_known")
    check_positive_int(resample_steps, "resample_steps", fix="(RePaint's U; 1 = no resampling)")
    check_var_type(var_type)
    m = _check_mask(mask, x_known)
    if steps is not None:
        schedule, model = respace(schedule, steps, model)
    x0 = x_known
    x = randn_like(x0, generator)
    ab, betas = schedule.alpha_bars, schedule.betas
    with eval_mode(model):
        for t in progress_bar(range(schedule.T, 0, -1), progress, desc="inpainting", leave=False):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            passes = resample_steps if t > 1 else 1  # at t = 1 nothing is redrawn after the step
            for u in range(passes):
                out = p_mean_variance(schedule, model, x, tt, var_type=var_type, clip_x0=clip_x0)
                unknown = out["mean"] + (out["variance"].sqrt() * randn_like(x, generator) if t > 1 else 0.0)
                a_prev = float(ab[t - 1])
                known = a_prev**0.5 * x0 + ((1 - a_prev) ** 0.5 * randn_like(x0, generator) if t > 1 else 0.0)
                x_prev = m * known + (1 - m) * unknown
                if u + 1 < passes:  # back one forward step: x_t ~ q(x_t | x_{t-1})
                    beta = float(betas[t])
                    x = (1 - beta) ** 0.5 * x_prev + beta**0.5 * randn_like(x_prev, generator)
            x = x_prev
    return x
