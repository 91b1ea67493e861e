r"""Guidance: steering the samplers towards a class, one hook for every sampler.

**Classifier-free guidance** (Ho & Salimans 2022, eq. 6). A class-conditional eps-model trained with label
dropout predicts both :math:`\epsilon_\theta(x_t, y)` and the unconditional :math:`\epsilon_\theta(x_t, \varnothing)`
(the null label). Sampling uses

.. math:: \tilde\epsilon = \epsilon_\theta(x_t, \varnothing) + s\,\big(\epsilon_\theta(x_t, y)
          - \epsilon_\theta(x_t, \varnothing)\big)
          = (1 + w)\,\epsilon_\theta(x_t, y) - w\,\epsilon_\theta(x_t, \varnothing)

with the **guidance scale** ``s`` in the diffusers sense (``guidance_scale``); Ho & Salimans write the same rule with
:math:`w = s - 1` (their :math:`w = 0` is plain conditional sampling). ``s = 1`` is plain conditional sampling and
costs one network call; ``s = 0`` is unconditional sampling; ``s > 1`` pushes away from the unconditional prediction
and costs one batched call of twice the batch.

Since :math:`\epsilon = -\sqrt{1-\bar\alpha_t}\,\nabla\log p(x_t)`, the guided eps is the eps of the score
:math:`\nabla\log p(x_t) + s\,\nabla\log p(y|x_t)` (Bayes: :math:`\nabla\log p(x_t|y) = \nabla\log p(x_t)
+ \nabla\log p(y|x_t)`), i.e. the score of the "tilted" density :math:`p(x_t|y)^s p(x_t)^{1-s}` at each t -- which
is in general *not* the noised version of the tilted data density, so the samples need not follow
:math:`p(x_0|y)^s p(x_0)^{1-s}` (notebooks/08_conditional_guidance.ipynb measures by how much).

A model here is any callable ``model(x_t, t, y=None)``; ``y=None`` means the null label. :func:`guided_model` turns it
into the plain ``model(x_t, t)`` the samplers call (:func:`edudiff.sampling.sample`,
:func:`~edudiff.sampling.ddim_sample`, :meth:`edudiff.sampling.DDPMScheduler.model_output` all take ``labels=`` and
``guidance_scale=``).

**Classifier guidance** (Dhariwal & Nichol 2021, sec. 4) steers an *unconditional* model with the gradient of a
classifier of noisy images :math:`p_\phi(y|x_t, t)`, trained separately: the paper shifts the ancestral step's mean by
:math:`s\,\Sigma\,\nabla\log p_\phi(y|x_t)`, and for DDIM uses the eps-form
:math:`\hat\epsilon = \epsilon_\theta(x_t) - \sqrt{1-\bar\alpha_t}\,s\,\nabla\log p_\phi(y|x_t)`.
:class:`ClassifierGuidance` is the eps-form, used by every sampler here through the same hook; in Algorithm 2 it
shifts the mean by :math:`\frac{\beta_t}{\sqrt{\alpha_t}}\,s\,\nabla\log p_\phi`, i.e. the paper's
:math:`\Sigma = \beta_t` times :math:`1/\sqrt{\alpha_t}` (at most 1.0102 for the linear schedule).
With the exact classifier, both guidances give the same eps: the scaled score above.

**Guidance in a limited interval** (Kynkaanniemi et al. 2024, "Applying Guidance in a Limited Interval Improves
Sample and Distribution Quality in Diffusion Models"): ``guidance_interval=(t_lo, t_hi)`` guides only the steps with
:math:`t_{lo} < t \le t_{hi}` (in the course's timesteps 1..T); the other steps use the model's own prediction --
the conditional :math:`\epsilon_\theta(x_t, y)` (s = 1, one network call) for classifier-free guidance, the plain
:math:`\epsilon_\theta(x_t)` for classifier guidance. The paper finds guidance at high noise harmful (it pulls every
sample of a class towards the same few shapes early on) and at low noise unneeded; notebook 08 measures it on MNIST.

Taught in: notebooks/08_conditional_guidance.ipynb.
"""

from __future__ import annotations

import torch

from ._validate import check_nonnegative_number

__all__ = [
    "cfg_eps",
    "check_guidance_interval",
    "label_batch",
    "ClassifierFreeGuidance",
    "ClassifierGuidance",
    "guided_model",
    "model_null_label",
]


def cfg_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    r"""Classifier-free guidance: :math:`\epsilon(x, \varnothing) + s\,(\epsilon(x, y) - \epsilon(x, \varnothing))`.

    ``eps_cond`` and ``eps_uncond`` have the same shape (B, ...); ``guidance_scale`` is s (Ho & Salimans' w = s - 1).
    """
    if eps_cond.shape != eps_uncond.shape:
        raise ValueError(
            f"eps_cond {tuple(eps_cond.shape)} and eps_uncond {tuple(eps_uncond.shape)} must have the same shape"
        )
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def model_null_label(model) -> int | None:
    """The null label of a class-conditional model (``model.null_label``, e.g. 10 for MNIST), or None when the model
    does not say (a plain callable, whose ``y=None`` is its null label)."""
    return getattr(model, "null_label", None)


def _is_unconditional(model) -> bool:
    """True for a model that says it takes no labels: an edudiff UNet with ``config.num_classes=None``."""
    config = getattr(model, "config", None)
    return config is not None and hasattr(config, "num_classes") and config.num_classes is None


def _check_scale(guidance_scale) -> float:
    meaning = "0 = unconditional, 1 = conditional, > 1 = guided"
    return check_nonnegative_number(guidance_scale, "guidance_scale", meaning)


def check_guidance_interval(guidance_interval, T: int | None = None) -> tuple[int, int] | None:
    """``guidance_interval`` as ``(t_lo, t_hi)`` ints with ``0 <= t_lo < t_hi`` (``<= T`` when T is given), or None.
    Guidance acts on the steps with ``t_lo < t <= t_hi``."""
    if guidance_interval is None:
        return None
    fix = (
        "guidance_interval must be a pair (t_lo, t_hi) of timesteps with 0 <= t_lo < t_hi"
        + (f" <= T = {T}" if T is not None else "")
        + ": guidance acts on the steps t_lo < t <= t_hi (None = every step)"
    )
    try:
        lo, hi = guidance_interval
    except (TypeError, ValueError):
        raise ValueError(f"{fix}; got {guidance_interval!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (lo, hi)):
        raise TypeError(f"{fix}; got {guidance_interval!r} (not two ints)")
    if not 0 <= lo < hi or (T is not None and hi > T):
        raise ValueError(f"{fix}; got {guidance_interval!r}")
    return int(lo), int(hi)


def _in_interval(interval, t: torch.Tensor) -> torch.Tensor:
    """A bool tensor like ``t``: which steps are guided (all of them without an interval)."""
    if interval is None:
        return torch.ones_like(t, dtype=torch.bool)
    return (t > interval[0]) & (t <= interval[1])


def _guide_where(inside: torch.Tensor, guided, unguided, x: torch.Tensor) -> torch.Tensor:
    """``guided()`` on the rows whose step is inside the interval, ``unguided()`` on the others; each is called only
    when some row needs it (the samplers give every row the same t, so one of the two)."""
    if bool(inside.all()):
        return guided()
    if not bool(inside.any()):
        return unguided()
    return torch.where(inside.reshape(-1, *([1] * (x.ndim - 1))), guided(), unguided())


def label_batch(labels, x: torch.Tensor) -> torch.Tensor:
    """``labels`` as a LongTensor (B,) on x's device for the batch ``x`` (B, ...): an int is repeated."""
    y = labels
    if isinstance(y, int) and not isinstance(y, bool):
        y = torch.full((x.shape[0],), y, dtype=torch.long)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"labels must be a LongTensor (B,) or an int, got {type(y).__name__}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape (B,) = ({x.shape[0]},), one per sample; got {tuple(y.shape)}")
    return y.to(x.device)


class ClassifierFreeGuidance:
    r"""``model(x_t, t) -> eps~``: a class-conditional ``model(x_t, t, y)`` guided towards ``labels`` at scale ``s``.

    ``labels``: a LongTensor (B,) of class labels for the batch, or an int for all rows. With ``s = 1`` one call
    ``model(x, t, y=labels)``; otherwise one call on the batch doubled, ``[x; x]`` with labels ``[labels; null]``
    (two calls if the model does not name its null label). ``interval=(t_lo, t_hi)``: guide only the steps with
    ``t_lo < t <= t_hi``, the others get the conditional eps (s = 1; see the module docstring).
    """

    def __init__(self, model, labels, guidance_scale: float = 1.0, interval=None):
        self.model, self.labels, self.guidance_scale = model, labels, _check_scale(guidance_scale)
        self.interval = check_guidance_interval(interval)
        self.null_label = model_null_label(model)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        y = label_batch(self.labels, x)
        return _guide_where(
            _in_interval(self.interval, t), lambda: self._guided(x, t, y), lambda: self.model(x, t, y=y), x
        )

    def _guided(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        s = self.guidance_scale
        if s == 1.0:
            return self.model(x, t, y=y)
        if s == 0.0:
            return self.model(x, t, y=None)
        if self.null_label is None:
            return cfg_eps(self.model(x, t, y=y), self.model(x, t, y=None), s)
        null = torch.full_like(y, self.null_label)
        eps = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, null]))
        eps_cond, eps_uncond = eps.chunk(2)
        return cfg_eps(eps_cond, eps_uncond, s)


class ClassifierGuidance:
    r"""``model(x_t, t) -> eps - sqrt(1 - alpha_bar_t) * s * grad_x log p_phi(y | x_t, t)``: an unconditional
    eps-model steered towards ``labels`` by ``classifier(x_t, t) -> logits (B, K)`` (log-probabilities work too:
    a log-softmax is taken), at scale ``s`` (Dhariwal & Nichol 2021's eps-form; see the module docstring).

    The gradient is taken by autograd, with gradients switched on inside the samplers' ``no_grad``.
    ``interval=(t_lo, t_hi)``: guide only the steps with ``t_lo < t <= t_hi``, the others get the plain eps.
    """

    def __init__(self, model, classifier, labels, guidance_scale: float, schedule, interval=None):
        self.model, self.classifier, self.labels = model, classifier, labels
        self.guidance_scale, self.schedule = _check_scale(guidance_scale), schedule
        self.interval = check_guidance_interval(interval, schedule.T)

    def class_gradient(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """grad_x log p_phi(y | x_t, t) for the batch's labels, shape like x."""
        y = label_batch(self.labels, x)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            log_probs = torch.log_softmax(self.classifier(xg, t), dim=-1)
            chosen = log_probs.gather(-1, y.to(log_probs.device).reshape(-1, 1)).sum()
            (grad,) = torch.autograd.grad(chosen, xg)
        return grad.to(x.dtype)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = self.model(x, t)
        if self.guidance_scale == 0.0:
            return eps

        def guided():
            scale = self.schedule.gather("sqrt_one_minus_alpha_bars", t, x)
            return eps - scale * self.guidance_scale * self.class_gradient(x, t)

        return _guide_where(_in_interval(self.interval, t), guided, lambda: eps, x)


def guided_model(
    model, labels=None, guidance_scale: float = 1.0, classifier=None, schedule=None, guidance_interval=None
):
    """The ``model(x_t, t)`` a sampler calls: ``model`` itself when no labels are asked for (an unconditional model,
    or a conditional one sampled with its null label); :class:`ClassifierGuidance` when a ``classifier`` is given
    (``schedule`` is then needed); else :class:`ClassifierFreeGuidance`. ``guidance_interval=(t_lo, t_hi)`` guides
    only the steps ``t_lo < t <= t_hi`` (None = all).

    Raises a ValueError naming the argument when labels or a guidance scale other than 1 are asked of a model that
    takes no labels (without a classifier), or a guidance scale or interval without labels.
    """
    s = _check_scale(guidance_scale)
    interval = check_guidance_interval(guidance_interval, None if schedule is None else schedule.T)
    if classifier is not None:
        if labels is None:
            raise ValueError("classifier guidance needs labels (the classes to guide towards); pass labels=...")
        if schedule is None:
            raise ValueError("classifier guidance needs the schedule (its sqrt(1 - alpha_bar_t)); pass schedule=...")
        return ClassifierGuidance(model, classifier, labels, s, schedule, interval)
    if labels is None:
        if interval is not None:
            raise ValueError(
                f"guidance_interval={guidance_interval} needs labels (the classes to guide towards); pass labels=..."
            )
        if s != 1.0:
            raise ValueError(
                f"guidance_scale={guidance_scale} needs labels (the classes to guide towards); pass labels=..., "
                f"or leave guidance_scale at 1 for unconditional sampling"
            )
        return model
    if _is_unconditional(model):
        raise ValueError(
            "labels (and guidance) were asked of an unconditional model (config.num_classes is None); sample it "
            "without labels, or train a class-conditional model (python -m edudiff train --class-conditional)"
        )
    return ClassifierFreeGuidance(model, labels, s, interval)
