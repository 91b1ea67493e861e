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
adapt to the known one (U = 1 is plain replacement). With ``jump_length`` = j > 1 it goes back j steps at a time,
:math:`x_{s+j} \sim q(x_{s+j}|x_s) = \mathcal N(\sqrt{r}\,x_s, (1-r) I)` with :math:`r = \bar\alpha_{s+j}/\bar\alpha_s`,
and comes down again through j model steps, so that the model revisits coarser structure (the paper's sec. 4.2; its
experiments use T = 250, U = 10, j = 10; :func:`repaint_schedule` lists the states visited). Either way a run costs
about ``T * U`` model calls.

**Reconstruction guidance** (Ho et al. 2022, "Video Diffusion Models", sec. 3.1) makes each step itself pay attention
to the known region instead: the model's prediction of x_0 for the unknown region b is moved along the gradient that
makes its prediction of the known region a agree with the known pixels,

.. math:: \tilde x_0^b = \hat x_0^b - \frac{w_r \sqrt{\bar\alpha_t}}{2}\,
          \nabla_{x_t^b} \big\| x_0^a - \hat x_0^a(x_t) \big\|^2,

with :math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon_\theta(x_t, t))/\sqrt{\bar\alpha_t}` (eq. 15 solved for
x_0), and the step's mean is the posterior mean (eq. 7) given :math:`\tilde x_0`. With ``reconstruction_weight``
:math:`w_r = 1` this is :math:`E[x_0^b|x_t] + \frac{1-\bar\alpha_t}{\sqrt{\bar\alpha_t}} \nabla_{x_t^b}
\log q(x_0^a|x_t)` under the approximation :math:`q(x_0^a|x_t) \approx \mathcal N(\hat x_0^a,
\frac{1-\bar\alpha_t}{\bar\alpha_t} I)` (Tweedie's formula for the conditional); larger :math:`w_r` trust it more.
It costs a backward pass through the network per step (a guided step took 1.8x a plain one on a CPU, MNIST U-Net),
and combines with the
replacement above (the known region is still replaced) and with resampling.

**Particles** (SMCDiff, Trippe et al. 2022, "Diffusion probabilistic modeling of protein backbones in 3D for the
motif-scaffolding problem", sec. 4) turn replacement into a sampler of the model's own conditional, exact as the
number of particles grows: the known region follows *one* noisy path, :math:`x_T^a \sim q(x_T|x_0)` and then
:math:`x_{t-1}^a \sim q(x_{t-1}|x_t, x_0)` (eq. 6-7), shared by ``particles`` = K chains per input; each chain draws
its unknown region from the model as above and is weighed by how likely the model finds the known path's next state,

.. math:: w^{(k)} \propto \prod_t p_\theta(x_{t-1}^a \mid x_t^{(k)})
          = \prod_t \mathcal N\big(x_{t-1}^a;\ \mu_\theta^a(x_t^{(k)}, t),\ \sigma_t^2 I\big),

so a chain whose unknown region disagrees with the known one (the model would have moved the known pixels elsewhere)
loses weight. When an input's effective sample size :math:`1/\sum_k w_k^2` (weights normalised) falls below K/2 its
chains are resampled in proportion to their weights; at the end one chain per input is drawn by its weight. It costs K
times the network calls. With reconstruction guidance the unknown region is drawn from the guided step instead, and the
weights stay the model's density of the known path (a heuristic: they do not correct for the guided proposal).

Shapes: ``x_known`` (B, ...) in the data's scale, ``mask`` broadcastable to it, 1 = known. A model is any callable
``model(x_t, t) -> eps_hat``; t runs 1..T.

Taught in: notebooks/09_guiding_trained_models.ipynb. Checked against the exact conditional of a
Gaussian mixture in tests/test_inpainting.py.
"""

from __future__ import annotations

import torch

from ._validate import check_finite, check_nonnegative_number, check_positive_int
from .forward import randn_like
from .posterior import predict_x0_from_eps, q_posterior
from .reverse import call_model, check_var_type, eval_mode, p_mean_variance, reverse_variance
from .sampling import respace
from .schedules import Schedule
from .utils import progress_bar

__all__ = ["inpaint", "repaint_schedule", "reconstruction_guided_step"]


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


def repaint_schedule(T: int, resample_steps: int = 1, jump_length: int = 1) -> list[int]:
    """The states x_T, ..., x_0 that :func:`inpaint` visits, in order: T, T-1, ..., 0 with jumps back.

    Going down is one reverse step of the model; after arriving at a state s >= 1 that is a multiple of j =
    ``jump_length`` with s + j <= T, the chain goes back up to s + j (one forward draw) and down again, U - 1 =
    ``resample_steps - 1`` times (RePaint's time schedule, Lugmayr et al. 2022, sec. 4.2; nothing is redrawn after the
    last step into x_0). Example: T = 6, U = 2, j = 2 gives 6 5 4 6 5 4 3 2 4 3 2 1 0. The number of model calls is
    the number of downward moves: T + (U - 1) * j * (the number of such s)."""
    check_positive_int(T, "T")
    check_positive_int(resample_steps, "resample_steps", fix="(RePaint's U; 1 = no resampling)")
    check_positive_int(jump_length, "jump_length", fix="(RePaint's j: how many steps each resampling goes back)")
    left: dict[int, int] = {}
    states, s = [T], T
    while s > 0:
        s -= 1
        states.append(s)
        if s >= 1 and s % jump_length == 0 and s + jump_length <= T:
            n = left.setdefault(s, resample_steps - 1)
            if n > 0:
                left[s] = n - 1
                s += jump_length
                states.append(s)
    return states


def reconstruction_guided_step(
    schedule: Schedule,
    model,
    xt: torch.Tensor,
    t: torch.Tensor,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    weight: float,
    var_type: str = "beta",
    clip_x0: bool = False,
) -> dict:
    """One reverse step's ``mean`` and ``variance`` (and ``pred_x0``, the guided prediction of x_0) with
    reconstruction guidance of weight ``weight`` (:math:`w_r`, see the module docstring); ``t`` a LongTensor (B,) in
    1..T, ``mask`` 1 where ``x_known`` is known. The unknown region's prediction of x_0 is moved; the known region's
    is the model's own (it is replaced anyway)."""  # fmt: skip
    with torch.enable_grad():
        x = xt.detach().requires_grad_(True)
        eps = call_model(model, x, t)
        if not eps.requires_grad:
            raise ValueError(
                "reconstruction_weight > 0 differentiates the model's eps with respect to x_t, but the model returned "
                "a tensor without a gradient (it detaches its input or runs under torch.no_grad); pass a model that "
                "autograd can differentiate, or reconstruction_weight=0"
            )
        pred_x0 = predict_x0_from_eps(schedule, x, t, eps)
        error = (mask * (x_known - pred_x0)).pow(2).sum()  # samples are independent: one backward for the batch
        (grad,) = torch.autograd.grad(error, x)
    pred_x0 = pred_x0.detach() - (weight / 2) * schedule.gather("sqrt_alpha_bars", t, xt) * (1 - mask) * grad
    if clip_x0:
        pred_x0 = pred_x0.clamp(-1.0, 1.0)
    mean, _ = q_posterior(schedule, pred_x0, xt, t)
    variance, _ = reverse_variance(schedule, t, xt, var_type)
    return {"mean": mean, "variance": variance, "pred_x0": pred_x0}


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
    jump_length: int = 1,
    reconstruction_weight: float = 0.0,
    particles: int = 1,
) -> torch.Tensor:
    """Fill in the unknown region (``mask == 0``) of ``x_known`` with the model; returns x_0, shape of ``x_known``,
    equal to ``x_known`` where ``mask == 1``.

    ``resample_steps``: RePaint's U (1 = replacement only); ``jump_length``: its j, how many steps each resampling
    goes back (:func:`repaint_schedule`). ``var_type`` and ``clip_x0`` as in :func:`edudiff.sample`. ``steps``: run
    on the schedule respaced to that many of its timesteps (:func:`edudiff.sampling.respace`; None = all T), the way
    to make it affordable on a CPU. Costs about ``steps * resample_steps`` network calls (``T * resample_steps``
    without ``steps``). ``reconstruction_weight``: :math:`w_r` of reconstruction guidance (0 = none, the default;
    see the module docstring), which adds a backward pass to each step. ``particles``: K > 1 runs K chains per input,
    weighed and resampled by how well each explains the known region, and returns one per input ("Particles" in the
    module docstring; K times the cost; only with ``resample_steps=1``, ``jump_length=1``).
    """
    check_finite(x_known, "x_known")
    meaning = "w_r of reconstruction guidance; 0 = none"
    w = check_nonnegative_number(reconstruction_weight, "reconstruction_weight", meaning)
    k = check_positive_int(particles, "particles", fix="(chains per input, SMCDiff's K; 1 = one chain)")
    if k > 1 and (resample_steps != 1 or jump_length != 1):
        raise ValueError(
            f"particles={k} weighs each chain by the model's density of one noisy path of the known region, which "
            "RePaint's resampling would redraw; use particles with resample_steps=1 and jump_length=1"
        )
    check_var_type(var_type)
    m = _check_mask(mask, x_known)
    if steps is not None:
        schedule, model = respace(schedule, steps, model)
    states = repaint_schedule(schedule.T, resample_steps, jump_length)
    n = x_known.shape[0]
    x0 = x_known.repeat_interleave(k, 0)  # particle j of input i is row i * k + j
    if k > 1:
        m = m.expand_as(x_known).repeat_interleave(k, 0)
    x = randn_like(x0, generator)
    ab, betas = schedule.alpha_bars, schedule.betas
    if k > 1:  # the known region's one noisy path, shared by an input's particles: x_T ~ q(x_T | x_0) ...
        path = ab[-1].item() ** 0.5 * x_known + (1 - ab[-1].item()) ** 0.5 * randn_like(x_known, generator)
        x = m * path.repeat_interleave(k, 0) + (1 - m) * x
        log_w = torch.zeros(n, k, dtype=torch.float64, device=x.device)
    with eval_mode(model):
        moves = zip(states, states[1:])
        for a, b in progress_bar(moves, progress, desc="inpainting", leave=False, total=len(states) - 1):
            if b > a:  # back up: x_b ~ q(x_b | x_a) = N(sqrt(keep) x_a, noise_var I)
                if b == a + 1:  # one step: beta_b itself (alpha_bar_b / alpha_bar_a up to rounding)
                    keep, noise_var = 1 - float(betas[b]), float(betas[b])
                else:
                    keep = float(ab[b] / ab[a])
                    noise_var = 1 - keep
                x = keep**0.5 * x + noise_var**0.5 * randn_like(x, generator)
                continue
            t = a  # one reverse step, x_t -> x_{t-1}: the model for the unknown region, q(x_{t-1}|x_0) for the known
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            if w > 0:
                out = reconstruction_guided_step(schedule, model, x, tt, x0, m, w, var_type=var_type, clip_x0=clip_x0)
            else:
                out = p_mean_variance(schedule, model, x, tt, var_type=var_type, clip_x0=clip_x0)
            if k > 1:  # ... continued by q(x_{t-1} | x_t, x_0) (eq. 6-7); weigh by p_theta(known x_{t-1} | x_t)
                if t > 1:
                    mean, var = q_posterior(schedule, x_known, path, torch.full((n,), t, device=x.device))
                    path = mean + var.sqrt() * randn_like(path, generator)
                else:  # x_0 itself
                    path = x_known
                known = path.repeat_interleave(k, 0)
                misfit = (m * (known - out["mean"])).pow(2) / out["variance"]
                log_w += -0.5 * misfit.flatten(1).sum(1).double().view(n, k)
                rows, low = _resample(log_w, generator)
                if rows is not None:
                    x, out = x[rows], {key: out[key][rows] for key in ("mean", "variance")}
                    log_w[low] = 0.0
            unknown = out["mean"] + (out["variance"].sqrt() * randn_like(x, generator) if t > 1 else 0.0)
            if k == 1:
                a_prev = float(ab[t - 1])
                known = a_prev**0.5 * x0 + ((1 - a_prev) ** 0.5 * randn_like(x0, generator) if t > 1 else 0.0)
            x = m * known + (1 - m) * unknown
    if k > 1:  # one particle per input, drawn by its weight
        pick = _draw(torch.softmax(log_w, 1), 1, generator)[:, 0]
        x = x.view(n, k, *x.shape[1:])[torch.arange(n, device=x.device), pick]
    return x


def _uniform(shape: tuple[int, int], generator, like: torch.Tensor) -> torch.Tensor:
    """Draws of U[0, 1) from ``generator`` (on its device, so that a seeded run repeats on every device), on ``like``'s
    device and dtype."""
    if generator is None:
        return torch.rand(shape, device=like.device, dtype=like.dtype)
    return torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def _draw(w: torch.Tensor, m: int, generator) -> torch.Tensor:
    """``m`` independent draws of an index j with probability w_j, for each row of the weights ``w`` (n, K): shape
    (n, m). Inverse-CDF sampling, the uniforms from ``generator``."""
    cdf = w.cumsum(1)
    u = _uniform((w.shape[0], m), generator, w) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp(max=w.shape[1] - 1)


def _resample(log_w: torch.Tensor, generator) -> tuple[torch.Tensor | None, torch.Tensor]:
    r"""Multinomial resampling of the inputs whose K particles' effective sample size :math:`1/\sum_j w_j^2` (weights
    normalised) fell below K/2: the rows to keep (those inputs' K particles drawn with replacement in proportion to
    their weights, the other inputs' kept; None when no input needs it) and which inputs were resampled. ``log_w``
    (n, K), log weights of the particles."""
    n, k = log_w.shape
    w = torch.softmax(log_w, 1)
    low = 1.0 / (w**2).sum(1) < k / 2
    if not bool(low.any()):
        return None, low
    rows = torch.arange(n * k, device=log_w.device).view(n, k)
    rows[low] = rows[low].gather(1, _draw(w[low], k, generator))
    return rows.flatten(), low
