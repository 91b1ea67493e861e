r"""The reverse process p_theta and samplers.

* reverse step (eq. 1, 11): :math:`p_\theta(x_{t-1}|x_t) = \mathcal N(\mu_\theta(x_t,t), \sigma_t^2 I)`,
  :math:`\mu_\theta = \frac{1}{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\epsilon_\theta(x_t,t)\big)`
* the two fixed variances of sec. 3.2: ``var_type="beta"`` (:math:`\sigma_t^2=\beta_t`, optimal when
  x_0 ~ N(0, I)) and ``var_type="beta_tilde"`` (:math:`\sigma_t^2=\tilde\beta_t`, optimal when x_0 is
  one fixed point). ``"fixedsmall"`` is ``"beta_tilde"``; ``"fixedlarge"`` is ``"beta"`` except at t = 1,
  where the released code uses :math:`\tilde\beta_2` (see :meth:`Schedule.model_log_variance`).
* :func:`sample` is Algorithm 2 (ancestral sampling); :func:`ddim_sample` is DDIM (Song et al. 2021),
  which with ``eta=1`` and all T steps is exactly Algorithm 2 with ``beta_tilde``.

A model is any callable ``model(x_t, t) -> eps_hat`` with x_t (B, ...) and t a LongTensor (B,) in 1..T.

Taught in: notebooks/05_l_simple.ipynb (Algorithm 2) and notebooks/06_unet_mnist.ipynb (DDIM).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import check_finite
from .forward import q_sample, randn_like
from .posterior import posterior_mean_from_eps, predict_eps_from_x0, predict_x0_from_eps, q_posterior
from .schedules import Schedule

__all__ = ["p_mean_variance", "p_sample", "sample", "ddim_timesteps", "ddim_sample", "DDPMScheduler",
           "VAR_TYPES"]

VAR_TYPES = {"beta": "beta", "fixedlarge": "beta", "beta_tilde": "beta_tilde", "fixedsmall": "beta_tilde"}


def _var_type(var_type: str) -> str:
    try:
        return VAR_TYPES[var_type]
    except (KeyError, TypeError):
        raise ValueError(f"var_type must be 'beta' (sigma_t^2 = beta_t) or 'beta_tilde' "
                         f"(sigma_t^2 = beta-tilde_t); got {var_type!r}") from None


def _call_model(model, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    eps = model(xt, t)
    if not isinstance(eps, torch.Tensor) or eps.shape != xt.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"model(x_t, t) must return eps_hat with the shape of x_t {tuple(xt.shape)}; got {got}")
    return eps.to(xt.dtype)


def p_mean_variance(schedule: Schedule, model, xt: torch.Tensor, t, var_type: str = "beta",
                    clip_x0: bool = False, eps: torch.Tensor | None = None) -> dict:
    r"""Mean and variance of the reverse step :math:`p_\theta(x_{t-1}|x_t)` for an eps-predicting model.

    Returns a dict with ``mean``, ``variance``, ``log_variance`` (each (B, ...)), ``eps`` (the model's
    output) and ``pred_x0``. With ``clip_x0=True`` the predicted x_0 is clipped to [-1, 1] (images)
    and the mean is the posterior mean given that clipped x_0. ``log_variance`` for ``beta_tilde`` is
    the clipped one (finite at t=1). Pass ``eps`` to reuse a model output already computed.

    Taught in: notebooks/05_l_simple.ipynb.
    """
    vt = _var_type(var_type)
    check_finite(xt, "xt")
    t = schedule.check_t(t, batch=xt.shape[0], device=xt.device)
    if eps is None:
        eps = _call_model(model, xt, t)
    pred_x0 = predict_x0_from_eps(schedule, xt, t, eps)
    if clip_x0:
        pred_x0 = pred_x0.clamp(-1.0, 1.0)
        mean, _ = q_posterior(schedule, pred_x0, xt, t)
    else:
        mean = posterior_mean_from_eps(schedule, xt, t, eps)
    if vt == "beta":
        log_variance = schedule.gather(schedule.model_log_variance(var_type), t, xt)  # sigma_1^2 per var_type
        variance = log_variance.exp()
    else:
        variance = schedule.gather("posterior_variance", t, xt)
        log_variance = schedule.gather("posterior_log_variance_clipped", t, xt)
    return {"mean": mean, "variance": variance.expand_as(xt), "log_variance": log_variance.expand_as(xt),
            "eps": eps, "pred_x0": pred_x0}


def p_sample(schedule: Schedule, model, xt: torch.Tensor, t, var_type: str = "beta", clip_x0: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
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


@contextmanager
def _eval_mode(model):
    """Put an nn.Module in eval mode (no dropout) for sampling, and restore its mode after."""
    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    try:
        yield
    finally:
        if was_training:
            model.train()


def _progress(iterable, progress: bool, desc: str, total: int):
    if not progress:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False)


def _initial_noise(shape, x_T, generator, device, dtype) -> torch.Tensor:
    if x_T is not None:
        check_finite(x_T, "x_T")
        return x_T
    if shape is None:
        raise ValueError("give the sample shape, e.g. shape=(16, 1, 28, 28), or a starting x_T")
    gen_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype).to(device)


@torch.no_grad()
def sample(schedule: Schedule, model, shape=None, var_type: str = "beta", clip_x0: bool = False,
           generator: torch.Generator | None = None, device=None, dtype=torch.float32,
           x_T: torch.Tensor | None = None, return_trajectory: bool = False, trajectory_stride: int = 1,
           progress: bool = False):
    r"""Algorithm 2 (ancestral sampling): x_T ~ N(0, I); for t = T..1, x_{t-1} = mu_theta + sigma_t z.

    Args:
        shape: the batch shape (B, ...) to sample (or give ``x_T`` to start from).
        var_type: ``"beta"`` or ``"beta_tilde"`` (sec. 3.2).
        clip_x0: clip the predicted x_0 to [-1, 1] at each step (image data).
        generator: a ``torch.Generator`` for reproducible noise.
        return_trajectory: also return ``{t: x_t}`` for t = T, T-stride, ..., 0 (always T and 0).
    Returns x_0 of shape ``shape`` (and the trajectory dict). An ``nn.Module`` is put in eval mode
    for the duration and restored after.

    Taught in: notebooks/05_l_simple.ipynb.
    """
    if device is None:
        device = x_T.device if x_T is not None else next(iter(getattr(model, "parameters", lambda: [])()),
                                                         torch.empty(0)).device
    x = _initial_noise(shape, x_T, generator, device, dtype)
    traj = {schedule.T: x.cpu()} if return_trajectory else None
    with _eval_mode(model):
        for t in _progress(range(schedule.T, 0, -1), progress, "sampling", schedule.T):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            x = p_sample(schedule, model, x, tt, var_type=var_type, clip_x0=clip_x0, generator=generator)
            if return_trajectory and ((t - 1) % trajectory_stride == 0):
                traj[t - 1] = x.cpu()
    return (x, traj) if return_trajectory else x


def ddim_timesteps(T: int, num_steps: int) -> list[int]:
    """The DDIM sub-sequence tau: ``num_steps`` timesteps evenly spread over 1..T, descending, with T first."""
    if not (1 <= int(num_steps) <= T):
        raise ValueError(f"num_steps must lie in 1..T={T}, got {num_steps}")
    taus = np.unique(np.round(np.linspace(1, T, int(num_steps))).astype(int))
    return [int(v) for v in taus[::-1]]


@torch.no_grad()
def ddim_sample(schedule: Schedule, model, shape=None, num_steps: int = 50, eta: float = 0.0,
                clip_x0: bool = False, generator: torch.Generator | None = None, device=None,
                dtype=torch.float32, x_T: torch.Tensor | None = None, return_trajectory: bool = False,
                progress: bool = False):
    r"""DDIM sampling (Song, Meng & Ermon 2021, eq. 12) over a sub-sequence of ``num_steps`` timesteps:

    :math:`x_{\tau'} = \sqrt{\bar\alpha_{\tau'}}\hat x_0 + \sqrt{1-\bar\alpha_{\tau'}-\sigma^2}\,\epsilon_\theta + \sigma z`,
    :math:`\sigma = \eta\sqrt{\frac{1-\bar\alpha_{\tau'}}{1-\bar\alpha_\tau}}\sqrt{1-\frac{\bar\alpha_\tau}{\bar\alpha_{\tau'}}}`,

    where tau' is the next lower step (0 after the last, alpha_bar_0 = 1). ``eta=0`` is deterministic;
    ``eta=1`` with ``num_steps=T`` is Algorithm 2 with sigma_t^2 = beta-tilde_t.
    Returns x_0 (and ``{t: x_t}`` for the visited steps and 0 if ``return_trajectory``).

    Taught in: notebooks/06_unet_mnist.ipynb.
    """
    if not float(eta) >= 0.0:
        raise ValueError(f"eta must be >= 0 (0 = deterministic DDIM, 1 = DDPM-like), got {eta}")
    taus = ddim_timesteps(schedule.T, num_steps)
    if device is None:
        device = x_T.device if x_T is not None else next(iter(getattr(model, "parameters", lambda: [])()),
                                                         torch.empty(0)).device
    x = _initial_noise(shape, x_T, generator, device, dtype)
    traj = {taus[0]: x.cpu()} if return_trajectory else None
    ab = schedule.alpha_bars
    with _eval_mode(model):
        for i in _progress(range(len(taus)), progress, "DDIM", len(taus)):
            t, prev = taus[i], (taus[i + 1] if i + 1 < len(taus) else 0)
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            eps = _call_model(model, x, tt)
            x0 = predict_x0_from_eps(schedule, x, tt, eps)
            if clip_x0:
                x0 = x0.clamp(-1.0, 1.0)
                eps = predict_eps_from_x0(schedule, x, tt, x0)
            a_t, a_prev = float(ab[t]), float(ab[prev])
            sigma = float(eta) * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
            x = a_prev ** 0.5 * x0 + max(1 - a_prev - sigma ** 2, 0.0) ** 0.5 * eps
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

    Difference from diffusers: timesteps run T..1 (the paper's convention), not T-1..0.

    >>> sched = DDPMScheduler(Schedule.linear(1000))
    >>> for t in sched.timesteps:                      # doctest: +SKIP
    ...     x = sched.step(model(x, t_batch), t, x).prev_sample

    Taught in: notebooks/05_l_simple.ipynb.
    """

    def __init__(self, schedule: Schedule, variance_type: str = "beta", clip_sample: bool = False):
        self.schedule = schedule
        self.variance_type = _var_type(variance_type)
        self.clip_sample = clip_sample

    @property
    def timesteps(self) -> torch.Tensor:
        """T, T-1, ..., 1."""
        return torch.arange(self.schedule.T, 0, -1)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps) -> torch.Tensor:
        """q_sample: sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise."""
        return q_sample(self.schedule, original_samples, timesteps, noise=noise)

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator: torch.Generator | None = None) -> SchedulerOutput:
        """One step of Algorithm 2 given the model's eps prediction ``model_output`` at ``timestep``."""
        t = self.schedule.check_t(timestep, batch=sample.shape[0], device=sample.device)
        out = p_mean_variance(self.schedule, None, sample, t, var_type=self.variance_type,
                              clip_x0=self.clip_sample, eps=model_output)
        return SchedulerOutput(prev_sample=_draw(out, t, sample, generator), pred_original_sample=out["pred_x0"])
