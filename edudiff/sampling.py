r"""Samplers: Algorithm 2 (ancestral sampling), DDIM, and a diffusers-style scheduler.

* :func:`sample` is Algorithm 2; each step draws x_{t-1} ~ p_theta(x_{t-1}|x_t) from
  :func:`edudiff.reverse.p_mean_variance` (re-exported here), with ``var_type="beta"`` or ``"beta_tilde"``.
* :func:`ddim_sample` is DDIM (Song et al. 2021) over ``ddim_steps`` timesteps; with ``eta=1`` and all T
  steps it is exactly Algorithm 2 with ``beta_tilde``.
* :class:`DDPMScheduler` wraps the same functions with diffusers' names.
* Every sampler takes ``labels=`` and ``guidance_scale=`` for a class-conditional model: classifier-free guidance
  (:mod:`edudiff.guidance`), ``eps~ = eps(x, null) + s (eps(x, y) - eps(x, null))``.

A model is any callable ``model(x_t, t) -> eps_hat`` with x_t (B, ...) and t a LongTensor (B,) in 1..T; a
class-conditional one is ``model(x_t, t, y=None)`` (``y=None``: the null label).

Taught in: notebooks/05_l_simple.ipynb (Algorithm 2) and notebooks/06_unet_mnist.ipynb (DDIM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._validate import check_finite, check_positive_int
from .forward import q_sample, randn_like
from .guidance import guided_model
from .posterior import predict_eps_from_x0, predict_x0_from_eps
from .reverse import VAR_TYPES, call_model, check_var_type, eval_mode, p_mean_variance
from .schedules import Schedule
from .utils import model_device, progress_bar

__all__ = [
    "p_mean_variance",
    "p_sample",
    "sample",
    "ddim_timesteps",
    "ddim_sample",
    "respace",
    "RespacedModel",
    "DDPMScheduler",
    "VAR_TYPES",
]  # p_mean_variance and VAR_TYPES live in edudiff.reverse; re-exported here


def p_sample(
    schedule: Schedule,
    model,
    xt: torch.Tensor,
    t,
    var_type: str = "beta",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""One reverse step (Algorithm 2, line 4): :math:`x_{t-1} = \mu_\theta(x_t,t) + \sigma_t z`,
    with z ~ N(0, I) where t > 1 and z = 0 where t = 1. Returns x_{t-1}, shape (B, ...)."""
    t = schedule.check_t(t, batch=xt.shape[0], device=xt.device)
    out = p_mean_variance(schedule, model, xt, t, var_type=var_type, clip_x0=clip_x0)
    return _draw(out, t, xt, generator)


def _draw(out: dict, t: torch.Tensor, xt: torch.Tensor, generator) -> torch.Tensor:
    """mean + sigma_t z on the rows with t > 1; the mean alone where t = 1 (Algorithm 2, line 4)."""
    if not bool((t > 1).any()):
        return out["mean"]
    nonzero = (t > 1).to(xt.dtype).reshape(-1, *([1] * (xt.ndim - 1)))
    return out["mean"] + nonzero * out["variance"].sqrt() * randn_like(xt, generator)


def _initial_noise(shape, x_T, generator, device, dtype) -> torch.Tensor:
    if x_T is not None:
        check_finite(x_T, "x_T")
        return x_T
    if shape is None:
        raise ValueError("give the sample shape, e.g. shape=(16, 1, 28, 28), or a starting x_T")
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


@torch.no_grad()
def sample(
    schedule: Schedule,
    model,
    shape=None,
    var_type: str = "beta",
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    device=None,
    dtype=torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    trajectory_stride: int = 1,
    progress: bool = False,
    labels=None,
    guidance_scale: float = 1.0,
    classifier=None,
    guidance_interval=None,
):
    r"""Algorithm 2 (ancestral sampling): x_T ~ N(0, I); for t = T..1, x_{t-1} = mu_theta + sigma_t z.

    Args:
        shape: the batch shape (B, ...) to sample (or give ``x_T`` to start from).
        var_type: ``"beta"`` or ``"beta_tilde"`` (sec. 3.2).
        clip_x0: clip the predicted x_0 to [-1, 1] at each step (image data).
        generator: a ``torch.Generator`` for reproducible noise.
        return_trajectory: also return ``{t: x_t}`` for t = T, T-stride, ..., 0 (always T and 0).
        labels: class labels (B,) (or an int) for a class-conditional model; None = unconditional.
        guidance_scale: classifier-free guidance scale s (:mod:`edudiff.guidance`; Ho & Salimans' w = s - 1):
            1 = plain conditional sampling (one network call per step), > 1 = guided (one call on twice the batch).
        classifier: ``classifier(x_t, t) -> logits`` for classifier guidance of an unconditional model towards
            ``labels`` at ``guidance_scale`` (Dhariwal & Nichol 2021; :class:`edudiff.guidance.ClassifierGuidance`).
        guidance_interval: ``(t_lo, t_hi)``: guide only the steps with ``t_lo < t <= t_hi``; the others use the
            model's own (conditional) prediction (Kynkaanniemi et al. 2024; :mod:`edudiff.guidance`). None = every step.
    Returns x_0 of shape ``shape`` (and the trajectory dict). An ``nn.Module`` is put in eval mode
    for the duration and restored after.

    Taught in: notebooks/05_l_simple.ipynb.
    """
    device = x_T.device if device is None and x_T is not None else model_device(model, device)
    x = _initial_noise(shape, x_T, generator, device, dtype)
    traj = {schedule.T: x.cpu()} if return_trajectory else None
    eps_model = guided_model(model, labels, guidance_scale, classifier, schedule, guidance_interval)
    with eval_mode(model), eval_mode(classifier):
        for t in progress_bar(range(schedule.T, 0, -1), progress, desc="sampling", leave=False):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            x = p_sample(schedule, eps_model, x, tt, var_type=var_type, clip_x0=clip_x0, generator=generator)
            if return_trajectory and ((t - 1) % trajectory_stride == 0):
                traj[t - 1] = x.cpu()
    return (x, traj) if return_trajectory else x


def ddim_timesteps(T: int, ddim_steps: int) -> list[int]:
    """The DDIM sub-sequence tau: ``ddim_steps`` timesteps evenly spread over 1..T, descending, with T first."""
    check_positive_int(ddim_steps, "ddim_steps", fix="(for Algorithm 2 with all T steps use edudiff.sample)")
    if ddim_steps > T:
        raise ValueError(f"ddim_steps must lie in 1..T={T}, got {ddim_steps}")
    taus = np.unique(np.round(np.linspace(1, T, ddim_steps)).astype(int))
    return [int(v) for v in taus[::-1]]


class RespacedModel:
    """``model`` called on a respaced schedule: its step k (1..T') is the original timestep ``timesteps[k]``."""

    def __init__(self, model, timesteps: torch.Tensor):
        self.model, self.timesteps = model, timesteps

    def __call__(self, x: torch.Tensor, t: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.model(x, self.timesteps.to(t.device)[t], *args, **kwargs)

    def __getattr__(self, name):  # train()/eval()/parameters()/config of the wrapped network
        return getattr(self.model, name)


def respace(schedule: Schedule, steps: int, model=None):
    r"""A shorter diffusion that visits ``steps`` of the schedule's timesteps (improved-diffusion's
    ``space_timesteps``; Nichol & Dhariwal 2021, sec. 4): with the kept steps
    :math:`0 = \tau_0 < \tau_1 < \dots < \tau_{T'} = T` (:func:`ddim_timesteps`),

    .. math:: \beta'_k = 1 - \bar\alpha_{\tau_k} / \bar\alpha_{\tau_{k-1}}, \qquad
              \text{so} \quad \bar\alpha'_k = \bar\alpha_{\tau_k}:

    the marginals q(x_k) of the short process are the original's at the kept steps, and a model trained on the
    long one predicts eps for it when called with :math:`\tau_k`. Algorithm 2 on the short schedule costs ``steps``
    network calls instead of T.

    Returns ``(short_schedule, timesteps)``, ``timesteps`` a LongTensor (T' + 1,) with ``timesteps[k]`` = tau_k
    (index 0 = 0, "no noise"); with ``model``, returns ``(short_schedule, RespacedModel(model, timesteps))``.
    """
    taus = ddim_timesteps(schedule.T, steps)[::-1]  # ascending 1..T
    ab = schedule.alpha_bars[[0, *taus]]
    short = Schedule(1.0 - ab[1:] / ab[:-1])
    timesteps = torch.tensor([0, *taus], dtype=torch.long)
    return (short, timesteps) if model is None else (short, RespacedModel(model, timesteps))


@torch.no_grad()
def ddim_sample(
    schedule: Schedule,
    model,
    shape=None,
    ddim_steps: int = 50,
    eta: float = 0.0,
    clip_x0: bool = False,
    generator: torch.Generator | None = None,
    device=None,
    dtype=torch.float32,
    x_T: torch.Tensor | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
    labels=None,
    guidance_scale: float = 1.0,
    classifier=None,
    guidance_interval=None,
):
    r"""DDIM sampling (Song, Meng & Ermon 2021, eq. 12) over a sub-sequence of ``ddim_steps`` timesteps:

    :math:`x_{\tau'} = \sqrt{\bar\alpha_{\tau'}}\hat x_0
    + \sqrt{1-\bar\alpha_{\tau'}-\sigma^2}\,\epsilon_\theta + \sigma z`,
    :math:`\sigma = \eta\sqrt{\frac{1-\bar\alpha_{\tau'}}{1-\bar\alpha_\tau}}
    \sqrt{1-\frac{\bar\alpha_\tau}{\bar\alpha_{\tau'}}}`,

    where tau' is the next lower step (0 after the last, alpha_bar_0 = 1). ``eta=0`` is deterministic;
    ``eta=1`` with ``ddim_steps=T`` is Algorithm 2 with sigma_t^2 = beta-tilde_t. ``labels``, ``guidance_scale``,
    ``classifier`` and ``guidance_interval`` as in :func:`sample` (guidance acts on eps, before x_0 is predicted; the
    interval is in the full schedule's timesteps, which DDIM visits a subset of).
    Returns x_0 (and ``{t: x_t}`` for the visited steps and 0 if ``return_trajectory``).

    Taught in: notebooks/06_unet_mnist.ipynb.
    """
    if not float(eta) >= 0.0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    taus = ddim_timesteps(schedule.T, ddim_steps)
    device = x_T.device if device is None and x_T is not None else model_device(model, device)
    x = _initial_noise(shape, x_T, generator, device, dtype)
    traj = {taus[0]: x.cpu()} if return_trajectory else None
    ab = schedule.alpha_bars
    eps_model = guided_model(model, labels, guidance_scale, classifier, schedule, guidance_interval)
    with eval_mode(model), eval_mode(classifier):
        for i in progress_bar(range(len(taus)), progress, desc="DDIM", leave=False):
            t, prev = taus[i], (taus[i + 1] if i + 1 < len(taus) else 0)
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            eps = call_model(eps_model, x, tt)
            x0 = predict_x0_from_eps(schedule, x, tt, eps)
            if clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
                eps = predict_eps_from_x0(schedule, x, tt, x0)
            a_t, a_prev = float(ab[t]), float(ab[prev])
            sigma = float(eta) * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
            x = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
            if prev > 0 and sigma > 0:
                x = x + sigma * randn_like(x, generator)
            if return_trajectory:
                traj[prev] = x.cpu()
    return (x, traj) if return_trajectory else x


@dataclass
class SchedulerOutput:
    """What :meth:`DDPMScheduler.step` returns (named as in diffusers)."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class DDPMScheduler:
    """A small diffusers-style facade over edudiff's functions, so ``add_noise`` / ``step`` feel familiar.

    Difference from diffusers: timesteps run T..1 (the paper's convention), not T-1..0. The argument
    names mirror diffusers exactly -- ``variance_type`` (elsewhere in edudiff: ``var_type``) and
    ``add_noise(original_samples, noise, timesteps)`` (elsewhere: ``eps``) -- so code written for
    diffusers reads the same here; these are the only two places edudiff uses those names.

    >>> sched = DDPMScheduler(Schedule.linear(1000))
    >>> for t in sched.timesteps:                      # doctest: +SKIP
    ...     x = sched.step(model(x, t_batch), t, x).prev_sample

    Taught in: notebooks/05_l_simple.ipynb.
    """

    def __init__(self, schedule: Schedule, variance_type: str = "beta", clip_sample: bool = False):
        self.schedule = schedule
        self.variance_type = check_var_type(variance_type)
        self.clip_sample = clip_sample

    @property
    def timesteps(self) -> torch.Tensor:
        """T, T-1, ..., 1."""
        return torch.arange(self.schedule.T, 0, -1)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """q_sample: sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise (``noise`` is eps, named as in diffusers)."""
        return q_sample(self.schedule, original_samples, timesteps, eps=noise)

    def model_output(
        self, model, sample: torch.Tensor, timestep, labels=None, guidance_scale: float = 1.0, guidance_interval=None
    ) -> torch.Tensor:
        """The eps prediction to pass to :meth:`step`: ``model(sample, t)``, or with ``labels`` the classifier-free
        guided ``eps(x, null) + guidance_scale * (eps(x, y) - eps(x, null))`` (diffusers does this in its
        pipelines; :mod:`edudiff.guidance`), only for ``t_lo < t <= t_hi`` if ``guidance_interval=(t_lo, t_hi)``."""
        t = self.schedule.check_t(timestep, batch=sample.shape[0], device=sample.device)
        guided = guided_model(
            model, labels, guidance_scale, schedule=self.schedule, guidance_interval=guidance_interval
        )
        return call_model(guided, sample, t)

    def step(
        self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator: torch.Generator | None = None
    ) -> SchedulerOutput:
        """One step of Algorithm 2 given the model's eps prediction ``model_output`` at ``timestep``."""
        t = self.schedule.check_t(timestep, batch=sample.shape[0], device=sample.device)
        out = p_mean_variance(
            self.schedule, None, sample, t, var_type=self.variance_type, clip_x0=self.clip_sample, eps=model_output
        )
        return SchedulerOutput(prev_sample=_draw(out, t, sample, generator), pred_original_sample=out["pred_x0"])
