r"""Toy data with exact answers: Gaussian mixtures in 1-D and 2-D.

A mixture stays a mixture under the forward process, so everything is known in closed form:

* marginal (from eq. 4):
  :math:`q(x_t) = \sum_k w_k\,\mathcal N(\sqrt{\bar\alpha_t}\mu_k,\ (\bar\alpha_t s_k^2 + 1-\bar\alpha_t) I)`
* the optimal denoiser:
  :math:`E[x_0|x_t] = \sum_k r_k(x_t)\big(\mu_k
  + \frac{s_k^2\sqrt{\bar\alpha_t}}{v_k}(x_t - \sqrt{\bar\alpha_t}\mu_k)\big)`
  with :math:`v_k = \bar\alpha_t s_k^2 + 1-\bar\alpha_t` and responsibilities
  :math:`r_k \propto w_k\,\mathcal N(x_t; \sqrt{\bar\alpha_t}\mu_k, v_k I)`
* the optimal eps-model:
  :math:`\epsilon^*(x_t,t) = (x_t - \sqrt{\bar\alpha_t}E[x_0|x_t])/\sqrt{1-\bar\alpha_t}
  = -\sqrt{1-\bar\alpha_t}\,\nabla\log q(x_t)`

Components are isotropic: means (K,) for 1-D data of shape (B,), or (K, d) for data of shape (B, d).
Everything is computed in float64.

**The components as classes** (conditioning, notebook 08): with y = the component a point was drawn from,
:math:`p(x_t|y=k)` is component k of the marginal, the class posterior is the responsibility
:math:`p(y=k|x_t) = r_k(x_t)`, and :math:`\nabla\log p(y=k|x_t) = \nabla\log p(x_t|y=k) - \nabla\log p(x_t)`
(Bayes' rule; :meth:`GaussianMixture.class_score`). :meth:`GaussianMixture.conditional_eps_model` is the exact
class-conditional eps-model ``model(x_t, t, y=None)``, with label K (or None) meaning "no class".

Taught in: notebooks/01_gaussian_mixture_diffusion.ipynb, 04_elbo_terms.ipynb, 05_l_simple.ipynb,
08_conditional_guidance.ipynb (the components as classes).
"""

from __future__ import annotations

import math

import torch

from .schedules import Schedule

__all__ = ["GaussianMixture", "two_gaussians_1d", "ring_2d"]


class GaussianMixture:
    """A mixture of isotropic Gaussians: ``weights`` (K,), ``means`` (K,) or (K, d), ``stds`` (K,).

    Data of a 1-D mixture has shape (B,); of a d-dimensional one, (B, d).
    """

    def __init__(self, weights, means, stds):
        w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        m = torch.as_tensor(means, dtype=torch.float64)
        s = torch.as_tensor(stds, dtype=torch.float64).reshape(-1)
        self.one_d = m.ndim == 1
        m = m.reshape(-1, 1) if self.one_d else m
        if m.ndim != 2:
            raise ValueError(f"means must have shape (K,) or (K, d); got {tuple(m.shape)}")
        K = m.shape[0]
        if w.shape[0] != K or s.shape[0] != K:
            raise ValueError(
                f"weights {tuple(w.shape)}, means {tuple(m.shape)} and stds {tuple(s.shape)} "
                f"must describe the same number of components K={K}"
            )
        if bool((w < 0).any()) or not math.isclose(float(w.sum()), 1.0, rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"weights must be non-negative and sum to 1; got sum {float(w.sum())}")
        if bool((s <= 0).any()) or not bool(torch.isfinite(torch.cat([s, m.reshape(-1)])).all()):
            raise ValueError("stds must be positive and means/stds finite")
        self.weights, self.means, self.stds = w, m, s
        self.dim = m.shape[1]

    def __repr__(self) -> str:
        return f"GaussianMixture(K={len(self.weights)}, dim={self.dim})"

    # ------------------------------------------------------------ shape helpers
    def _as_2d(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        if self.one_d:
            return x.reshape(-1, 1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}) for this {self.dim}-D mixture; got {tuple(x.shape)}")
        return x

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1) if self.one_d else y

    # ------------------------------------------------------------ the data distribution
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples, float64, of shape (n,) for a 1-D mixture or (n, d). See also :meth:`sample_with_labels`."""
        return self.sample_with_labels(n, generator)[0]

    def sample_with_labels(self, n: int, generator: torch.Generator | None = None):
        """(samples, component index of each) for n draws."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        x = self.means[k] + self.stds[k, None] * z
        return self._out(x), k

    def component_log_probs(self, x) -> torch.Tensor:
        """log w_k + log N(x; mu_k, s_k^2 I) for each row and component: shape (B, K)."""
        x = self._as_2d(x)
        d2 = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        var = self.stds**2
        return self.weights.log() - 0.5 * self.dim * torch.log(2 * math.pi * var) - 0.5 * d2 / var

    def log_prob(self, x) -> torch.Tensor:
        """log density of each row: shape (B,)."""
        return torch.logsumexp(self.component_log_probs(x), dim=1)

    def mean(self) -> torch.Tensor:
        return self._out((self.weights[:, None] * self.means).sum(0, keepdim=True))[0]

    def variance(self) -> torch.Tensor:
        """Per-dimension variance of the mixture."""
        mu = (self.weights[:, None] * self.means).sum(0)
        second = (self.weights[:, None] * (self.means**2 + self.stds[:, None] ** 2)).sum(0)
        v = second - mu**2
        return v[0] if self.one_d else v

    # ------------------------------------------------------------ under the forward process
    def _alpha_bar(self, schedule: Schedule, t: int) -> float:
        if isinstance(t, torch.Tensor):
            t = int(t)
        if not (0 <= t <= schedule.T):
            raise ValueError(f"t must lie in 0..T={schedule.T} (0 = the data itself); got {t}")
        return float(schedule.alpha_bars[t])

    def marginal(self, schedule: Schedule, t: int) -> GaussianMixture:
        """q(x_t) as a mixture: component k becomes N(sqrt(ab) mu_k, ab s_k^2 + 1 - ab). t in 0..T (int)."""
        ab = self._alpha_bar(schedule, t)
        means = math.sqrt(ab) * self.means
        stds = torch.sqrt(ab * self.stds**2 + (1 - ab))
        return GaussianMixture(self.weights, means.reshape(-1) if self.one_d else means, stds)

    def posterior_mean_x0(self, schedule: Schedule, xt, t: int) -> torch.Tensor:
        """E[x_0 | x_t] for every row of ``xt`` at the (integer) step t in 1..T; shape like xt."""
        ab = self._alpha_bar(schedule, t)
        x = self._as_2d(xt)
        marg = self.marginal(schedule, t)
        r = torch.softmax(marg.component_log_probs(x), dim=1)  # (B, K)
        v = marg.stds**2  # (K,)
        cond = self.means[None] + (self.stds**2 * math.sqrt(ab) / v)[None, :, None] * (
            x[:, None, :] - math.sqrt(ab) * self.means[None]
        )  # (B, K, d)
        return self._out((r[:, :, None] * cond).sum(1))

    def score(self, schedule: Schedule, xt, t: int) -> torch.Tensor:
        """grad_x log q(x_t) at the (integer) step t in 0..T; shape like xt."""
        x = self._as_2d(xt)
        marg = self.marginal(schedule, t)
        r = torch.softmax(marg.component_log_probs(x), dim=1)
        g = (marg.means[None] - x[:, None, :]) / (marg.stds**2)[None, :, None]
        return self._out((r[:, :, None] * g).sum(1))

    def optimal_eps(self, schedule: Schedule, xt, t) -> torch.Tensor:
        """The minimiser of L_simple, eps*(x_t, t) = (x_t - sqrt(ab_t) E[x_0|x_t]) / sqrt(1 - ab_t).

        ``t`` is an int, or a LongTensor (B,) (rows are grouped by step). Shape like ``xt``.
        """
        xt = torch.as_tensor(xt, dtype=torch.float64)
        if not isinstance(t, torch.Tensor) or t.ndim == 0:
            t = torch.full((xt.shape[0],), int(t), dtype=torch.long)
        out = torch.empty_like(xt)
        for step in torch.unique(t).tolist():
            rows = t == step
            ab = float(schedule.alpha_bars[step])
            x0 = self.posterior_mean_x0(schedule, xt[rows], step)
            out[rows] = (xt[rows] - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        return out

    # ------------------------------------------------------------ the components as classes
    def component(self, k: int) -> GaussianMixture:
        """Component k alone, p(x_0 | y = k), as a one-component mixture."""
        K = len(self.weights)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < K:
            raise ValueError(f"k must be a component index in 0..{K - 1}; got {k!r}")
        means = self.means[k : k + 1]
        return GaussianMixture([1.0], means.reshape(-1) if self.one_d else means, self.stds[k : k + 1])

    def class_posterior(self, schedule: Schedule, xt, t: int) -> torch.Tensor:
        """p(y = k | x_t) for every row and class k: the responsibilities of q(x_t)'s components, shape (B, K)."""
        return torch.softmax(self.marginal(schedule, t).component_log_probs(xt), dim=1)

    def class_score(self, schedule: Schedule, xt, t: int, y: int) -> torch.Tensor:
        """grad_x log p(y | x_t) = grad log q(x_t | y) - grad log q(x_t), in closed form; shape like xt."""
        return self.component(y).score(schedule, xt, t) - self.score(schedule, xt, t)

    def noisy_classifier(self, schedule: Schedule):
        """The exact classifier of noisy data, ``classifier(x_t, t) -> log p(y | x_t)`` (B, K), differentiable in x_t
        (for classifier guidance: :class:`edudiff.guidance.ClassifierGuidance`). ``t`` is a LongTensor (B,)."""

        def classifier(xt, t):
            x = xt.to(torch.float64)
            out = torch.empty(x.shape[0], len(self.weights), dtype=torch.float64, device=x.device)
            for step in torch.unique(t).tolist():
                rows = t == step
                log_joint = self.marginal(schedule, step).component_log_probs(x[rows])
                out[rows] = log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True)
            return out

        return classifier

    def conditional_eps_model(self, schedule: Schedule):
        """The exact class-conditional eps-model ``model(x_t, t, y=None)``: eps* of component y's marginal for the
        rows whose label y is a class 0..K-1, and of the whole mixture where y is None or K (the null label).
        Its ``null_label`` is K (as :class:`edudiff.nn.UNet` names it), so guidance batches both calls."""
        K = len(self.weights)
        parts = [self.component(k).optimal_eps_model(schedule) for k in range(K)]
        whole = self.optimal_eps_model(schedule)

        def model(xt, t, y=None):
            out = whole(xt, t)
            if y is None:
                return out
            y = torch.as_tensor(y, device=xt.device).reshape(-1)
            if y.shape[0] != xt.shape[0] or bool(((y < 0) | (y > K)).any()):
                raise ValueError(f"y must hold one label in 0..{K} (K = no class) per row of x_t; got {y.tolist()}")
            for k in range(K):
                rows = y == k
                if bool(rows.any()):
                    out[rows] = parts[k](xt[rows], t[rows])
            return out

        model.null_label = K
        return model

    def optimal_eps_model(self, schedule: Schedule):
        """A callable ``model(x_t, t) -> eps*`` (in x_t's dtype) for the samplers and the ELBO; differentiable in x_t
        (autograd), as reconstruction guidance (:func:`edudiff.inpainting.inpaint`) needs."""

        def model(xt, t):
            return self.optimal_eps(schedule, xt.cpu(), t.cpu()).to(device=xt.device, dtype=xt.dtype)

        return model


def two_gaussians_1d() -> GaussianMixture:
    """The course's 1-D running example: 0.3 N(-2, 0.5^2) + 0.7 N(1.5, 0.3^2)."""
    return GaussianMixture([0.3, 0.7], [-2.0, 1.5], [0.5, 0.3])


def ring_2d(k: int = 8, radius: float = 2.0, std: float = 0.15) -> GaussianMixture:
    """k equal Gaussians on a circle of the given radius (a classic 2-D toy)."""
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    means = torch.stack([radius * torch.cos(ang), radius * torch.sin(ang)], dim=1)
    return GaussianMixture(torch.full((k,), 1.0 / k, dtype=torch.float64), means, torch.full((k,), std))
